/*
 * Redis backend: acquire (docs/redis-backend.md, "Acquire and wait").
 *
 * One attempt is one script run: it claims the key if it is free (or its
 * lease is over, or its holder was proved dead by us) and draws the fencing
 * token in the same run. A waiting acquire subscribes to the key's channel
 * first and then tries, so that a release published after its try wakes
 * it; it sleeps until a message, the holder's deadline, its own deadline or
 * a cancel, whichever comes first, and tries again.
 */
#include "redis.h"
#include "acquire.h"
#include "cancel.h"
#include "rscripts.h"
#include "rtable.h"

#include <hiredis.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define AGAIN 1000                 /* try again at once */
#define SAFETY_SLEEP_MS 2000u      /* longest sleep without a try (a message lost
                                      with a dropped subscription) */

struct racq {
    shmlease_table *t;
    struct rtable *rt;
    const shmlease_acquire_opts *o;
    const char *key;
    size_t klen;
    uint64_t ttl;
    uint64_t deadline;             /* on our clock; UINT64_MAX: for ever */
    char names[5][RT_KEYNAME_MAX];
    /* the last "held" answer */
    int64_t remaining;
    uint64_t holder_tok;
    int holder_held;               /* held (not a grace period) */
    char holder_own[RT_OWN_MAX];
};

/* Claims the key on the server once. 1: got it, *out filled; 0: held
 * (a->remaining, a->holder_*); AGAIN; or an error. */
static int try_once(struct racq *a, const char *count, uint64_t dead_tok, shmlease_lease *out);

/* The fields of a "held" answer {0, remaining, owner, state, token}. */
static void note_holder(struct racq *a, const redisReply *r)
{
    a->remaining = r->elements > 1 && r->element[1]->type == REDIS_REPLY_INTEGER
                   ? r->element[1]->integer : 0;
    a->holder_own[0] = 0;
    a->holder_held = 0;
    a->holder_tok = 0;
    if (r->elements < 5)
        return;
    const redisReply *own = r->element[2], *st = r->element[3];
    if (own->type == REDIS_REPLY_STRING && own->len < sizeof a->holder_own) {
        memcpy(a->holder_own, own->str, own->len);
        a->holder_own[own->len] = 0;
    }
    a->holder_held = st->type == REDIS_REPLY_STRING && st->len == 1 && st->str[0] == 'h';
    a->holder_tok = shmlease__rt_u64(r->element[4]);
}

/* Frees on the server a grant that came back too late to be used. */
static void give_back(struct racq *a, uint64_t tok, uint64_t exp)
{
    if (shmlease__rt_add(a->rt, tok, exp + 1000, a->key, a->klen) != 0)
        return;                     /* its TTL frees it */
    shmlease_lease l;
    shmlease__rt_lease_value(a->rt, &l, tok, exp);
    if (shmlease__redis_release(a->t, &l, 0) != 0)
        shmlease__rt_forget(a->rt, tok);
}

/* A grant {1, token, ...} sent at SENT: ours if it is still good once it
 * is recorded and its value made (the last clock read before we return). */
static int take_grant(struct racq *a, const redisReply *r, uint64_t sent, shmlease_lease *out)
{
    uint64_t tok = r->elements > 1 ? shmlease__rt_u64(r->element[1]) : 0;
    uint64_t exp = shmlease__rt_deadline(sent, a->ttl);
    if (!tok)
        return -EPROTO;
    int rc = shmlease__rt_add(a->rt, tok, exp, a->key, a->klen);
    if (rc) {
        give_back(a, tok, exp);
        return rc;
    }
    shmlease__rt_lease_value(a->rt, out, tok, exp);
    if (shmlease__rnow_ms() >= exp) {
        shmlease__rt_forget(a->rt, tok);
        give_back(a, tok, exp);     /* over before we could return it */
        return -ETIME;
    }
    return 1;
}

/* How long one attempt may keep reconnecting: retry_ms, and for a waiting
 * acquire not past its own deadline (but long enough for one answer). */
static uint64_t attempt_bound(const struct racq *a)
{
    const struct rurl *u = &a->rt->pool.url;
    uint64_t now = shmlease__rnow_ms(), b = now + u->retry_ms;
    uint64_t floor = now + u->timeout_ms;
    if (a->o->wait_ms != 0 && a->deadline < b)
        b = a->deadline > floor ? a->deadline : floor;
    return b;
}

static int try_once(struct racq *a, const char *count, uint64_t dead_tok, shmlease_lease *out)
{
    struct rtable *rt = a->rt;
    char ttlb[24], req[24], pid[24], dead[24];
    struct rcmd cmd;
    shmlease__rt_lease_cmd(rt, &cmd, a->key, a->klen, a->names);
    shmlease__rcmd_addu(&cmd, ttlb, sizeof ttlb, a->ttl);
    shmlease__rcmd_add(&cmd, rt->own, rt->ownlen);
    shmlease__rcmd_add(&cmd, req, shmlease__rt_reqid(rt, req));
    shmlease__rcmd_addu(&cmd, pid, sizeof pid, (uint64_t)rt->pid);
    shmlease__rcmd_add(&cmd, rt->host, strlen(rt->host));
    shmlease__rcmd_add(&cmd, a->o->metadata ? a->o->metadata : "", a->o->metadata_len);
    shmlease__rcmd_add(&cmd, count, strlen(count));
    if (dead_tok)
        shmlease__rcmd_addu(&cmd, dead, sizeof dead, dead_tok);
    else
        shmlease__rcmd_add(&cmd, "", 0);
    uint64_t sent = shmlease__rnow_ms();
    redisReply *r = NULL;
    int rc = shmlease__rcall(&rt->pool, RS_ACQUIRE, &cmd, RCALL_IDEMPOTENT, attempt_bound(a), &r);
    if (rc)
        return rc;
    long long h = shmlease__rt_head(r);
    if (h == 1)
        rc = take_grant(a, r, sent, out);
    else if (h == 0)
        note_holder(a, r), rc = 0;
    else
        rc = h == -1 ? AGAIN : -EPROTO;
    freeReplyObject(r);
    return rc;
}

/* Is the holder of the last answer a process of this host and PID
 * namespace that has died? Another host's holder is freed by its TTL. */
static int holder_dead(const struct racq *a)
{
    return a->holder_held && shmlease__rt_owner_alive(a->rt, a->holder_own, NULL, NULL) == 0;
}

/* A subscription to the key's channel, and what ends a sleep. */
struct rsleep {
    struct rconn *sub;
    int efd;                           /* the cancel token's eventfd, or -1 */
    struct cancel_wait cw;
};

static void subscribe_on(struct racq *a, struct rsleep *s)
{
    struct rtable *rt = a->rt;
    uint64_t bound = shmlease__rnow_ms() + rt->pool.url.connect_timeout_ms;
    if (shmlease__rconn_get(&rt->pool, &s->sub, a->deadline < bound ? a->deadline : bound))
        return;
    char w[SHMLEASE_KEY_MAX + 3] = "w:";
    memcpy(w + 2, a->key, a->klen);
    char chan[RT_KEYNAME_MAX];
    size_t cn = shmlease__rt_name(rt, chan, w, a->klen + 2);
    const char *argv[2] = { "SUBSCRIBE", chan };
    size_t len[2] = { 9, cn };
    redisReply *r = redisCommandArgv(s->sub->c, 2, argv, len);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        shmlease__rconn_put(&rt->pool, s->sub, 1);
        s->sub = NULL;
    }
    if (r)
        freeReplyObject(r);
}

/* Subscribes to the key's channel (a connection of its own); on failure
 * the waits are timed only. */
static void subscribe(struct racq *a, struct rsleep *s)
{
    struct rpipe_guard g;
    shmlease__rpipe_block(&g);
    subscribe_on(a, s);
    shmlease__rpipe_restore(&g);
}

static void drop_sub(struct racq *a, struct rsleep *s)
{
    shmlease__rconn_put(&a->rt->pool, s->sub, 1);   /* subscribed: never reused */
    s->sub = NULL;
}

/* Sleeps up to MS: 1 if cancelled, else 0. */
static int sleep_once(struct racq *a, struct rsleep *s, uint64_t ms)
{
    struct pollfd p[2] = { { .fd = s->sub ? s->sub->c->fd : -1, .events = POLLIN },
                           { .fd = s->efd, .events = POLLIN } };
    int n = poll(p, 2, (int)ms);
    if (n > 0 && (p[1].revents & POLLIN))
        return 1;
    if (n > 0 && s->sub && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        void *m = NULL;
        if (redisBufferRead(s->sub->c) != REDIS_OK) {
            drop_sub(a, s);
            return 0;
        }
        while (redisGetReplyFromReader(s->sub->c, &m) == REDIS_OK && m) {
            freeReplyObject(m);
            m = NULL;
        }
    }
    return shmlease__cancel_fired(a->o->cancel);
}

/* How long to sleep after a "held" answer (or an error: RC). */
static uint64_t sleep_ms(const struct racq *a, int rc, uint64_t now)
{
    uint64_t ms = rc == 0 && a->remaining > 0 ? (uint64_t)a->remaining + 1 : 100;
    if (ms > SAFETY_SLEEP_MS)
        ms = SAFETY_SLEEP_MS;
    if (a->deadline - now < ms)
        ms = a->deadline - now;
    return ms;
}

static void count_timeout(struct racq *a)
{
    struct rcmd cmd = { .argc = 0 };
    shmlease__rcmd_add(&cmd, "HINCRBY", 7);
    shmlease__rcmd_add(&cmd, a->names[1], strlen(a->names[1]));
    shmlease__rcmd_add(&cmd, "timeouts", 8);
    shmlease__rcmd_add(&cmd, "1", 1);
    redisReply *r = NULL;
    if (shmlease__rcall(&a->rt->pool, -1, &cmd, 0, shmlease__rnow_ms() + 100, &r) == 0)
        freeReplyObject(r);
}

/* Tries, then sleeps, until the key is ours, the wait runs out, the token
 * fires, or the server stays unreachable for retry_ms. */
static int wait_loop(struct racq *a, struct rsleep *s, shmlease_lease *out)
{
    const char *count = "";
    uint64_t dead_tok = 0, err_since = 0;
    int slept = 0;
    for (;;) {
        if (!s->sub)
            subscribe(a, s);
        int rc = try_once(a, count, dead_tok, out);
        count = "";
        if (rc == 1)
            return 0;
        if (rc == 0 && holder_dead(a) && a->holder_tok != dead_tok) {
            dead_tok = a->holder_tok;
            continue;
        }
        uint64_t now = shmlease__rnow_ms();
        if (rc < 0 && rc != AGAIN && !err_since)
            err_since = now;
        else if (rc >= 0)
            err_since = 0;
        if (err_since && now - err_since >= a->rt->pool.url.retry_ms)
            return rc;
        if (now >= a->deadline) {
            count_timeout(a);
            return -ETIMEDOUT;
        }
        if (rc == AGAIN)
            continue;
        if (sleep_once(a, s, sleep_ms(a, rc, now)))
            return -ECANCELED;
        if (!slept)
            count = "w";               /* counted once: the first sleep */
        slept = 1;
    }
}

/* Waits (subscribed, cancellable) after a first try found the key held. */
static int acquire_wait(struct racq *a, shmlease_lease *out)
{
    struct rsleep s = { .sub = NULL, .efd = -1 };
    shmlease_cancel_token *c = a->o->cancel;
    if (c) {
        s.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s.efd < 0)
            return errno == EMFILE || errno == ENFILE ? -errno : -ENOMEM;
        if (shmlease__cancel_enter_fd(c, &s.cw, NULL, s.efd)) {
            close(s.efd);
            return -ECANCELED;
        }
    }
    int rc = wait_loop(a, &s, out);
    if (c) {
        shmlease__cancel_leave(c, &s.cw);
        close(s.efd);
    }
    if (s.sub)
        drop_sub(a, &s);
    return rc;
}

int shmlease__redis_acquire(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                            shmlease_lease *out)
{
    size_t klen;
    if (!o || !out)
        return -EINVAL;
    int rc = shmlease__rt_check_key(key, &klen);
    if (rc == 0)
        rc = shmlease__acquire_opts_check(t, o);
    if (rc)
        return rc;
    if (o->mode != SHMLEASE_EXCLUSIVE || (o->flags & SHMLEASE_ACQUIRE_FAIR))
        return -EOPNOTSUPP;             /* not on this backend (docs/redis-backend.md) */
    struct racq a = { .t = t, .rt = shmlease__rt(t), .o = o, .key = key, .klen = klen,
                      .ttl = o->ttl_ms > RT_TTL_MAX ? RT_TTL_MAX : o->ttl_ms };
    uint64_t now = shmlease__rnow_ms();
    a.deadline = o->wait_ms == SHMLEASE_WAIT_FOREVER ? UINT64_MAX : now + (uint64_t)o->wait_ms;
    rc = try_once(&a, o->wait_ms == 0 ? "cb" : "c", 0, out);
    if (rc == 0 && holder_dead(&a))
        rc = try_once(&a, "", a.holder_tok, out);
    if (rc == AGAIN)
        rc = try_once(&a, "", 0, out);
    if (rc == 1)
        return 0;
    if (rc == 0 && o->wait_ms == 0)
        return -EBUSY;
    if (rc < 0 && (rc != -ETIME || o->wait_ms == 0))
        return rc;                      /* a try reports what stopped it */
    return acquire_wait(&a, out);
}
