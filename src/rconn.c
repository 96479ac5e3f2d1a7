/* Redis backend: the connection pool and the call with its retries (rconn.h). */
#include "rconn.h"
#include "rscripts.h"

#include <hiredis.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IDLE_MAX 16               /* idle connections kept per handle */
#define BACKOFF_MIN_MS 20u
#define BACKOFF_MAX_MS 500u

uint64_t shmlease__rnow_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct timeval tv_of(uint32_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000u), (suseconds_t)(ms % 1000u) * 1000 };
    return tv;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* hiredis writes with write(2): a server gone away would raise SIGPIPE and
 * kill the caller. Blocked for the call's thread, and a SIGPIPE that the
 * call raised is taken back before the mask is restored. */
void shmlease__rpipe_block(struct rpipe_guard *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    sigpending(&pend);
    g->pending_before = sigismember(&pend, SIGPIPE);
}

void shmlease__rpipe_restore(struct rpipe_guard *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    if (!g->pending_before && sigismember(&pend, SIGPIPE)) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

void shmlease__rpool_init(struct rpool *p, const struct rurl *u)
{
    memset(p, 0, sizeof *p);
    p->url = *u;
    pthread_mutex_init(&p->mu, NULL);
}

static void free_list(struct rconn *c)
{
    while (c) {
        struct rconn *next = c->next;
        redisFree(c->c);
        free(c);
        c = next;
    }
}

void shmlease__rpool_destroy(struct rpool *p)
{
    free_list(p->idle);
    p->idle = NULL;
    pthread_mutex_destroy(&p->mu);
}

void shmlease__rpool_forget(struct rpool *p)
{
    /* Closing our copy of each descriptor sends nothing: the parent's
     * connections stay as they are. */
    free_list(p->idle);
    p->idle = NULL;
    p->nidle = 0;
    pthread_mutex_init(&p->mu, NULL);
}

/* The error of a reply that the caller does not see, as a code; 0 when R
 * is not one. */
static int reply_code(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR)
        return 0;
    if (!strncmp(r->str, "NOAUTH", 6) || !strncmp(r->str, "WRONGPASS", 9) ||
        !strncmp(r->str, "NOPERM", 6))
        return -EACCES;
    if (!strncmp(r->str, "OOM", 3))
        return -ENOSPC;
    return -EPROTO;
}

/* Runs one setup command on a new connection; 0 when it answered OK. */
static int setup_cmd(redisContext *c, int argc, const char **argv, int fail_rc)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r)
        return -ECONNREFUSED;
    int rc = r->type == REDIS_REPLY_ERROR ? (reply_code(r) == -EACCES ? -EACCES : fail_rc) : 0;
    freeReplyObject(r);
    return rc;
}

/* Loads every script on a new connection (one pipelined round trip) and
 * learns their names. */
static int load_scripts(redisContext *c)
{
    for (int i = 0; i < RS_COUNT; i++) {
        const char *argv[3] = { "SCRIPT", "LOAD", shmlease__rscript_body(i) };
        redisAppendCommandArgv(c, 3, argv, NULL);
    }
    int rc = 0;
    for (int i = 0; i < RS_COUNT; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            return -ECONNREFUSED;
        if (r->type == REDIS_REPLY_STRING && r->len == 40)
            shmlease__rscript_set_sha(i, r->str, r->len);
        else if (!rc)
            rc = reply_code(r) ? reply_code(r) : -EPROTO;
        freeReplyObject(r);
    }
    return rc;
}

/* AUTH, SELECT, scripts. */
static int setup(struct rpool *p, redisContext *c)
{
    const struct rurl *u = &p->url;
    int rc = 0;
    if (u->pass[0]) {
        const char *a1[2] = { "AUTH", u->pass }, *a2[3] = { "AUTH", u->user, u->pass };
        rc = u->user[0] ? setup_cmd(c, 3, a2, -EACCES) : setup_cmd(c, 2, a1, -EACCES);
    }
    if (!rc && u->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", u->db);
        const char *argv[2] = { "SELECT", db };
        rc = setup_cmd(c, 2, argv, -EINVAL);
    }
    return rc ? rc : load_scripts(c);
}

static int connect_new(struct rpool *p, struct rconn **out, uint64_t deadline_ms)
{
    uint64_t now = shmlease__rnow_ms();
    uint32_t ct = p->url.connect_timeout_ms;
    if (deadline_ms > now && deadline_ms - now < ct)
        ct = (uint32_t)(deadline_ms - now);
    char host[RURL_HOST_MAX + 1];
    int port;
    pthread_mutex_lock(&p->mu);
    snprintf(host, sizeof host, "%s", p->node_host[0] ? p->node_host : p->url.host);
    port = p->node_host[0] ? p->node_port : p->url.port;
    pthread_mutex_unlock(&p->mu);
    redisContext *c = p->url.is_unix ? redisConnectUnixWithTimeout(p->url.path, tv_of(ct ? ct : 1))
                                     : redisConnectWithTimeout(host, port, tv_of(ct ? ct : 1));
    if (!c)
        return -ENOMEM;
    int rc = c->err ? -ECONNREFUSED : 0;
    uint32_t st = p->url.timeout_ms;       /* AUTH, SELECT, scripts: within the deadline too */
    now = shmlease__rnow_ms();
    if (deadline_ms > now && deadline_ms - now < st)
        st = (uint32_t)(deadline_ms - now);
    if (!rc && redisSetTimeout(c, tv_of(st ? st : 1)) != REDIS_OK)
        rc = -ECONNREFUSED;
    if (!rc)
        rc = setup(p, c);
    if (!rc && redisSetTimeout(c, tv_of(p->url.timeout_ms)) != REDIS_OK)
        rc = -ECONNREFUSED;
    struct rconn *rc_conn = rc ? NULL : calloc(1, sizeof *rc_conn);
    if (!rc && !rc_conn)
        rc = -ENOMEM;
    if (rc) {
        redisFree(c);
        return rc;
    }
    rc_conn->c = c;
    rc_conn->timeout_ms = p->url.timeout_ms;
    *out = rc_conn;
    return 0;
}

int shmlease__rconn_get(struct rpool *p, struct rconn **out, uint64_t deadline_ms)
{
    pthread_mutex_lock(&p->mu);
    struct rconn *c = p->idle;
    if (c) {
        p->idle = c->next;
        p->nidle--;
    }
    pthread_mutex_unlock(&p->mu);
    if (c) {
        c->next = NULL;
        *out = c;
        return 0;
    }
    return connect_new(p, out, deadline_ms);
}

void shmlease__rconn_put(struct rpool *p, struct rconn *c, int broken)
{
    if (!c)
        return;
    pthread_mutex_lock(&p->mu);
    if (!broken && p->nidle < IDLE_MAX) {
        c->next = p->idle;
        p->idle = c;
        p->nidle++;
        c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (c) {
        redisFree(c->c);
        free(c);
    }
}

void shmlease__rcmd_add(struct rcmd *cmd, const void *s, size_t n)
{
    if (cmd->argc < RCMD_ARGS_MAX) {
        cmd->argv[cmd->argc] = s;
        cmd->len[cmd->argc] = n;
        cmd->argc++;
    }
}

void shmlease__rcmd_addu(struct rcmd *cmd, char *buf, size_t bufsz, uint64_t v)
{
    int n = snprintf(buf, bufsz, "%llu", (unsigned long long)v);
    shmlease__rcmd_add(cmd, buf, (size_t)n);
}

/* What one attempt came to. */
enum outcome { DONE, RETRY_SAFE, RETRY_MOVED, RETRY_LOST, FAIL };

/* "MOVED 3999 127.0.0.1:6381" or "ASK ...": the node to use from now on. */
static int take_redirect(struct rpool *p, const redisReply *r)
{
    const char *sp = strchr(r->str, ' ');
    sp = sp ? strchr(sp + 1, ' ') : NULL;
    const char *colon = sp ? strrchr(sp, ':') : NULL;
    if (!colon || p->url.is_unix || (size_t)(colon - sp - 1) > RURL_HOST_MAX)
        return -EPROTO;
    pthread_mutex_lock(&p->mu);
    memcpy(p->node_host, sp + 1, (size_t)(colon - sp - 1));
    p->node_host[colon - sp - 1] = 0;
    p->node_port = (int)strtol(colon + 1, NULL, 10);
    free_list(p->idle);                  /* connections to the old node */
    p->idle = NULL;
    p->nidle = 0;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* An error reply: retried (the command did not run), moved, or final. */
static enum outcome classify_error(struct rpool *p, const redisReply *r, int *rc)
{
    static const char *const busy[] = { "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN",
                                        "CLUSTERDOWN", "READONLY", "NOREPLICAS" };
    if (!strncmp(r->str, "MOVED ", 6) || !strncmp(r->str, "ASK ", 4)) {
        *rc = take_redirect(p, r);
        return *rc ? FAIL : RETRY_MOVED;
    }
    for (size_t i = 0; i < sizeof busy / sizeof busy[0]; i++)
        if (!strncmp(r->str, busy[i], strlen(busy[i])))
            return RETRY_SAFE;           /* refused unrun: the server is not ready */
    *rc = reply_code(r);
    return FAIL;
}

/* Builds "EVALSHA sha nkeys ..." (or EVAL body) in FULL from CMD. */
static void script_cmd(struct rcmd *full, int script, const struct rcmd *cmd, int by_body)
{
    full->argc = 0;
    const char *sha = shmlease__rscript_sha(script);
    if (by_body || !sha[0]) {
        shmlease__rcmd_add(full, "EVAL", 4);
        shmlease__rcmd_add(full, shmlease__rscript_body(script), strlen(shmlease__rscript_body(script)));
    } else {
        shmlease__rcmd_add(full, "EVALSHA", 7);
        shmlease__rcmd_add(full, sha, 40);
    }
    for (int i = 0; i < cmd->argc; i++)
        shmlease__rcmd_add(full, cmd->argv[i], cmd->len[i]);
}

/* One send and its answer on C. */
static enum outcome attempt(struct rpool *p, struct rconn *c, int script, struct rcmd *cmd,
                            redisReply **out, int *rc)
{
    struct rcmd full;
    int by_body = 0;
    for (;;) {
        if (script >= 0)
            script_cmd(&full, script, cmd, by_body);
        struct rcmd *send = script >= 0 ? &full : cmd;
        errno = 0;
        redisReply *r = redisCommandArgv(c->c, send->argc, send->argv, send->len);
        if (!r) {
            *rc = (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIME : -ECONNRESET;
            return RETRY_LOST;
        }
        if (r->type == REDIS_REPLY_ERROR && script >= 0 && !by_body && !strncmp(r->str, "NOSCRIPT", 8)) {
            freeReplyObject(r);
            by_body = 1;                  /* not loaded here (a restart, a new node) */
            continue;
        }
        if (r->type != REDIS_REPLY_ERROR || (script < 0 && !reply_code(r))) {
            *out = r;
            return DONE;
        }
        enum outcome o = classify_error(p, r, rc);
        freeReplyObject(r);
        return o;
    }
}

/* Sets C's socket timeout for an answer due before DEADLINE_MS (never
 * longer than the URL's timeout_ms). */
static void fit_timeout(struct rpool *p, struct rconn *c, uint64_t deadline_ms)
{
    uint64_t now = shmlease__rnow_ms();
    uint32_t want = p->url.timeout_ms;
    if (deadline_ms > now && deadline_ms - now < want)
        want = (uint32_t)(deadline_ms - now);
    if (deadline_ms <= now)
        want = 1;
    if (want != c->timeout_ms && redisSetTimeout(c->c, tv_of(want)) == REDIS_OK)
        c->timeout_ms = want;
}

int shmlease__rcall(struct rpool *p, int script, struct rcmd *cmd, unsigned flags,
                    uint64_t deadline_ms, struct redisReply **out)
{
    if (!deadline_ms)
        deadline_ms = shmlease__rnow_ms() + p->url.retry_ms;
    uint32_t backoff = BACKOFF_MIN_MS;
    for (int moves = 0;;) {
        struct rconn *c = NULL;
        struct rpipe_guard g;
        shmlease__rpipe_block(&g);
        int rc = shmlease__rconn_get(p, &c, deadline_ms);
        enum outcome o = RETRY_SAFE;
        if (rc == 0) {
            fit_timeout(p, c, deadline_ms);
            o = attempt(p, c, script, cmd, out, &rc);
            shmlease__rconn_put(p, c, o == RETRY_LOST || o == RETRY_MOVED);
        }
        shmlease__rpipe_restore(&g);
        if (rc != 0 && o == RETRY_SAFE && rc != -ECONNREFUSED) {
            return rc;                   /* AUTH or SELECT refused: no use retrying */
        }
        if (o == DONE)
            return 0;
        if (o == FAIL || (o == RETRY_LOST && !(flags & RCALL_IDEMPOTENT)))
            return rc;
        if (o == RETRY_MOVED && ++moves < 5)
            continue;                     /* another node: at once */
        uint64_t now = shmlease__rnow_ms();
        if (now >= deadline_ms)
            return rc ? rc : -ECONNREFUSED;
        sleep_ms((uint32_t)(deadline_ms - now < backoff ? deadline_ms - now : backoff));
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
}
