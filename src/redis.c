/*
 * Redis backend: opening and closing a table, and the calls on a lease held
 * (renew, release, release_after, check) and break. The acquire is in
 * racquire.c, the inspection calls in rinspect.c. docs/redis-backend.md
 * says what each call promises on this backend and why.
 */
#include "redis.h"
#include "keepalive.h"
#include "names.h"
#include "rscripts.h"
#include "rtable.h"

#include <hiredis.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* How a lease value's own release ended (its _private[3]), for
 * shmlease_with_lease: 0 not ended by a release of it. */
#define L_ENDED_OK   1u
#define L_ENDED_LOST 2u

int shmlease__redis_built(void)
{
    return 1;
}

static int open_mode(const shmlease_options *o, char *mode)
{
    if (o->flags & (SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_READONLY))
        *mode = 'n';
    else
        *mode = (o->flags & SHMLEASE_OPEN_EXCL) ? 'x' : 'c';
    return 0;
}

/* Finds (or makes, as the flags say) the table's record on the server. */
static int open_on_server(struct rtable *rt, const shmlease_options *o)
{
    char names[5][RT_KEYNAME_MAX], mode, epoch[24];
    struct rcmd cmd;
    open_mode(o, &mode);
    shmlease__rt_lease_cmd(rt, &cmd, "", 0, names);
    shmlease__rcmd_add(&cmd, &mode, 1);
    shmlease__rcmd_addu(&cmd, epoch, sizeof epoch, rt->nonce);
    shmlease__rcmd_add(&cmd, RT_FORMAT, strlen(RT_FORMAT));
    uint32_t bound = o->open_timeout_ms ? o->open_timeout_ms : rt->pool.url.retry_ms;
    redisReply *r = NULL;
    int rc = shmlease__rcall(&rt->pool, RS_OPEN, &cmd, RCALL_IDEMPOTENT,
                             shmlease__rnow_ms() + bound, &r);
    if (rc)
        return rc;
    long long h = shmlease__rt_head(r);
    freeReplyObject(r);
    switch (h) {
    case 1: case 2: return 0;
    case 0: return -ENOENT;
    case -1: return -EEXIST;
    default: return -EPROTO;           /* another layout (-2), or not our script */
    }
}

int shmlease__redis_open(const char *name, const shmlease_options *o, shmlease_table **out)
{
    if (o->clock_ms)
        return -EINVAL;                /* deadlines are the server's: no test clock */
    struct rurl u;
    int rc = shmlease__rurl_parse(o->backend, &u);
    if (rc)
        return rc;
    shmlease_table *t = calloc(1, sizeof *t);
    struct rtable *rt = calloc(1, sizeof *rt);
    if (!t || !rt) {
        free(t);
        free(rt);
        return -ENOMEM;
    }
    t->fd = t->sfd = -1;
    t->readonly = rt->readonly = (o->flags & SHMLEASE_OPEN_READONLY) != 0;
    strncpy(t->name, name, sizeof t->name - 1);
    t->remote = rt;
    shmlease__rt_setup(rt, &u, name);
    rc = open_on_server(rt, o);
    if (rc) {
        shmlease__rt_teardown(rt);
        free(rt);
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* Releases every lease still in the map (best effort, one try each). */
static void release_all(shmlease_table *t, struct rtable *rt)
{
    for (;;) {
        uint64_t tok = 0;
        pthread_mutex_lock(&rt->mu);
        for (unsigned b = 0; b < RT_MAP_BUCKETS && !tok; b++)
            if (rt->map[b])
                tok = rt->map[b]->tok;
        pthread_mutex_unlock(&rt->mu);
        if (!tok)
            return;
        shmlease_lease l;
        shmlease__rt_lease_value(rt, &l, tok, 0);
        int rc = shmlease__redis_release(t, &l, 0);
        if (rc != 0)
            shmlease__rt_forget(rt, tok);
        if (rc != 0 && rc != -ESTALE)
            rt->server_down = 1;       /* the rest end at their TTL */
    }
}

void shmlease__redis_close(shmlease_table *t)
{
    struct rtable *rt = shmlease__rt(t);
    shmlease__keepalive_close(t);
    rt->closing = 1;
    if (!rt->readonly)
        release_all(t, rt);
    shmlease__rt_teardown(rt);
    free(rt);
    free(t);
}

/* A call on a lease held: what the map knows of it (its token, key and
 * our deadline), and its script's command so far. */
struct lcall {
    struct rtable *rt;
    uint64_t tok, exp;
    size_t klen;
    char key[SHMLEASE_KEY_MAX + 1];
    char names[5][RT_KEYNAME_MAX];
    char tb[24], arg[24];
    struct rcmd cmd;
};

/* A lease script's command for LC's lease into CMD: keys, then token and owner. */
static void lcall_cmd(struct lcall *lc, struct rcmd *cmd)
{
    shmlease__rt_lease_cmd(lc->rt, cmd, lc->key, lc->klen, lc->names);
    shmlease__rcmd_addu(cmd, lc->tb, sizeof lc->tb, lc->tok);
    shmlease__rcmd_add(cmd, lc->rt->own, lc->rt->ownlen);
}

/* Starts a call on lease L of T (WRITE: one that changes it): 0 with LC
 * ready and ARG (a number, the script's next argument) added, or -EINVAL,
 * -EPERM (WRITE on a read-only handle), -ESTALE (lost, ended, or not a
 * lease of this handle). */
static int lcall_begin(shmlease_table *t, const shmlease_lease *l, int write, struct lcall *lc)
{
    if (!l)
        return -EINVAL;
    if (write && t->readonly)
        return -EPERM;
    lc->rt = shmlease__rt(t);
    lc->tok = shmlease__rt_lease_tok(lc->rt, l);
    int rc = lc->tok ? shmlease__rt_find(lc->rt, lc->tok, lc->key, &lc->klen, &lc->exp) : -ESTALE;
    if (rc == 0)
        lcall_cmd(lc, &lc->cmd);
    return rc;
}

/* How long a call on a lease may keep reconnecting: until its deadline,
 * and never more than the URL's retry_ms. */
static uint64_t call_bound(const struct rtable *rt, uint64_t exp)
{
    uint64_t b = shmlease__rnow_ms() + rt->pool.url.retry_ms;
    return exp < b ? exp : b;
}

/* After a call on lease TOK that did not get an answer: lost once its
 * deadline has passed (we can no longer prove it held), else the error. */
static int unconfirmed(struct rtable *rt, uint64_t tok, uint64_t exp, int rc)
{
    if (shmlease__rnow_ms() < exp)
        return rc;
    shmlease__rt_forget(rt, tok);
    return -ESTALE;
}

static int send_release(struct rtable *rt, struct rcmd *cmd, uint64_t exp, long long *head);

int shmlease__redis_renew(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms)
{
    struct lcall lc;
    if (ttl_ms == 0)
        return -EINVAL;
    int rc = lcall_begin(t, l, 1, &lc);
    if (rc)
        return rc;
    struct rtable *rt = lc.rt;
    if (ttl_ms > RT_TTL_MAX)
        ttl_ms = RT_TTL_MAX;
    shmlease__rcmd_addu(&lc.cmd, lc.arg, sizeof lc.arg, ttl_ms);
    uint64_t sent = shmlease__rnow_ms();
    redisReply *r = NULL;
    rc = shmlease__rcall(&rt->pool, RS_RENEW, &lc.cmd, RCALL_IDEMPOTENT, call_bound(rt, lc.exp), &r);
    if (rc)
        return unconfirmed(rt, lc.tok, lc.exp, rc);
    long long h = shmlease__rt_head(r);
    freeReplyObject(r);
    if (h != 1 || shmlease__rnow_ms() >= lc.exp) {
        /* Lost, or confirmed only after our deadline: by then we may have told
         * someone it was lost, and lost is for ever. Free the key we kept. */
        if (h == 1) {
            struct rcmd rel;
            lcall_cmd(&lc, &rel);
            shmlease__rcmd_add(&rel, "0", 1);
            (void)send_release(rt, &rel, shmlease__rnow_ms() + rt->pool.url.timeout_ms, &h);
        }
        shmlease__rt_forget(rt, lc.tok);
        return -ESTALE;
    }
    uint64_t nexp = shmlease__rt_deadline(sent, ttl_ms);
    if (shmlease__rt_set_exp(rt, lc.tok, nexp) != 0)
        return -ESTALE;                /* a copy was found lost meanwhile */
    l->expires_at_ms = nexp;
    return 0;
}

/* Sends the release script; once more, marked as a second sending, when the
 * first one's answer was lost. */
static int send_release(struct rtable *rt, struct rcmd *cmd, uint64_t exp, long long *head)
{
    redisReply *r = NULL;
    shmlease__rcmd_add(cmd, "0", 1);
    int rc = shmlease__rcall(&rt->pool, RS_RELEASE, cmd, 0, exp, &r);
    if (rc == -ECONNRESET || rc == -ETIME) {
        cmd->argv[cmd->argc - 1] = "1";
        rc = shmlease__rcall(&rt->pool, RS_RELEASE, cmd, RCALL_IDEMPOTENT, exp, &r);
    }
    if (rc == 0) {
        *head = shmlease__rt_head(r);
        freeReplyObject(r);
    }
    return rc;
}

int shmlease__redis_release(shmlease_table *t, shmlease_lease *l, uint64_t grace_ms)
{
    struct lcall lc;
    int rc = lcall_begin(t, l, 1, &lc);
    if (rc)
        return rc;
    struct rtable *rt = lc.rt;
    shmlease__keepalive_end(t, lc.tok, lc.tok);   /* ours ends it: no "lost" signal */
    if (rt->closing && rt->server_down) {
        shmlease__rt_forget(rt, lc.tok);
        return -ECONNREFUSED;
    }
    if (grace_ms > RT_TTL_MAX)
        grace_ms = RT_TTL_MAX;
    shmlease__rcmd_addu(&lc.cmd, lc.arg, sizeof lc.arg, grace_ms);
    long long h = 0;
    uint64_t bound = call_bound(rt, lc.exp);
    if (rt->closing)
        bound = shmlease__rnow_ms() + rt->pool.url.timeout_ms;   /* close: one try */
    rc = send_release(rt, &lc.cmd, bound, &h);
    if (rc) {
        rc = unconfirmed(rt, lc.tok, lc.exp, rc);
        if (rc == -ESTALE)
            l->_private[3] = L_ENDED_LOST;
        return rc;
    }
    shmlease__rt_forget(rt, lc.tok);              /* spent either way */
    l->_private[3] = h == 1 ? L_ENDED_OK : L_ENDED_LOST;
    return h == 1 ? 0 : -ESTALE;
}

int shmlease__redis_end(shmlease_table *t, shmlease_lease *l)
{
    if (l->_private[3] == L_ENDED_OK)
        return 0;
    if (l->_private[3] == L_ENDED_LOST)
        return -ESTALE;
    return shmlease__redis_release(t, l, 0);
}

int shmlease__redis_check(shmlease_table *t, const shmlease_lease *l)
{
    struct lcall lc;
    int rc = lcall_begin(t, l, 0, &lc);
    if (rc)
        return rc;
    redisReply *r = NULL;
    rc = shmlease__rcall(&lc.rt->pool, RS_CHECK, &lc.cmd, RCALL_IDEMPOTENT, call_bound(lc.rt, lc.exp), &r);
    if (rc)
        return unconfirmed(lc.rt, lc.tok, lc.exp, rc);
    long long h = shmlease__rt_head(r);
    freeReplyObject(r);
    if (h == 1 && shmlease__rnow_ms() < lc.exp)
        return 0;
    if (h != 1)
        shmlease__rt_forget(lc.rt, lc.tok);
    return -ESTALE;
}

int shmlease__redis_break(shmlease_table *t, const char *key)
{
    size_t klen;
    int rc = shmlease__rt_check_key(key, &klen);
    if (rc)
        return rc;
    if (t->readonly)
        return -EPERM;
    struct rtable *rt = shmlease__rt(t);
    char names[5][RT_KEYNAME_MAX], req[24];
    struct rcmd cmd;
    shmlease__rt_lease_cmd(rt, &cmd, key, klen, names);
    size_t rn = shmlease__rt_reqid(rt, req);
    char breq[RT_OWN_MAX + 24];
    memcpy(breq, rt->own, rt->ownlen);
    memcpy(breq + rt->ownlen, req, rn);
    shmlease__rcmd_add(&cmd, breq, rt->ownlen + rn);
    redisReply *r = NULL;
    rc = shmlease__rcall(&rt->pool, RS_BREAK, &cmd, RCALL_IDEMPOTENT, 0, &r);
    if (rc)
        return rc;
    long long h = shmlease__rt_head(r);
    freeReplyObject(r);
    return h == 1 ? 0 : -ENOENT;
}

/* Deletes every key of the table, in batches of what one SCAN step finds. */
static int delete_table(struct rtable *rt)
{
    char pattern[RT_KEYNAME_MAX], cursor[32] = "0";
    size_t pn = shmlease__rt_name(rt, pattern, "*", 1);
    int found = 0;
    do {
        const char *argv[6] = { "SCAN", cursor, "MATCH", pattern, "COUNT", "1000" };
        struct rcmd cmd = { .argc = 0 };
        for (int i = 0; i < 6; i++)
            shmlease__rcmd_add(&cmd, argv[i], i == 3 ? pn : strlen(argv[i]));
        redisReply *r = NULL;
        int rc = shmlease__rcall(&rt->pool, -1, &cmd, RCALL_IDEMPOTENT, 0, &r);
        if (rc)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            return -EPROTO;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str ? r->element[0]->str : "0");
        const redisReply *keys = r->element[1];
        struct rcmd del = { .argc = 0 };
        shmlease__rcmd_add(&del, "UNLINK", 6);
        for (size_t i = 0; i < keys->elements; i++) {
            shmlease__rcmd_add(&del, keys->element[i]->str, keys->element[i]->len);
            found = 1;
            if (del.argc == RCMD_ARGS_MAX || i + 1 == keys->elements) {
                redisReply *d = NULL;
                rc = shmlease__rcall(&rt->pool, -1, &del, RCALL_IDEMPOTENT, 0, &d);
                if (rc) {
                    freeReplyObject(r);
                    return rc;
                }
                freeReplyObject(d);
                del.argc = 1;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return found ? 0 : -ENOENT;
}

int shmlease__redis_unlink(const char *name, const char *backend)
{
    int rc = shmlease__validate_name(name);
    if (rc)
        return rc;
    struct rurl u;
    rc = shmlease__rurl_parse(backend, &u);
    if (rc)
        return rc;
    struct rtable *rt = calloc(1, sizeof *rt);
    if (!rt)
        return -ENOMEM;
    shmlease__rt_setup(rt, &u, name);
    /* A keyed command first: on a Cluster it moves the pool to the table's node. */
    shmlease_options o = { .flags = SHMLEASE_OPEN_NOCREATE };
    rc = open_on_server(rt, &o);
    if (rc == 0 || rc == -ENOENT)
        rc = delete_table(rt);
    shmlease__rt_teardown(rt);
    free(rt);
    return rc;
}
