/*
 * Redis backend: inspect, foreach and stats (docs/redis-backend.md,
 * "Inspection"). Each is one script run that reads the server's clock once,
 * so what it reports is one moment of the server's view.
 */
#include "redis.h"
#include "rscripts.h"
#include "rtable.h"

#include <hiredis.h>

#include <errno.h>
#include <string.h>

#define LIST_PAGE 256

static int is_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

/* Fills OUT from the six fields {st, tok, pid, own, meta, remaining} at F. */
static void fill_info(struct rtable *rt, shmlease_info *out, redisReply *const *f)
{
    int grace = is_str(f[0]) && f[0]->len == 1 && f[0]->str[0] == 'g';
    out->fencing_token = shmlease__rt_u64(f[1]);
    out->remaining_ms = f[5]->type == REDIS_REPLY_INTEGER ? f[5]->integer : 0;
    out->expires_at_ms = shmlease__rnow_ms() + (uint64_t)(out->remaining_ms > 0 ? out->remaining_ms : 0);
    out->in_grace = grace;
    out->mode = SHMLEASE_EXCLUSIVE;
    out->holders = grace ? 0 : 1;
    if (is_str(f[4]) && f[4]->len <= SHMLEASE_METADATA_MAX) {
        memcpy(out->metadata, f[4]->str, f[4]->len);
        out->metadata_len = f[4]->len;
    }
    if (grace)
        return;                        /* held by nobody */
    char own[RT_OWN_MAX] = "";
    if (is_str(f[3]) && f[3]->len < sizeof own)
        memcpy(own, f[3]->str, f[3]->len);
    int32_t pid = 0;
    uint64_t start = 0;
    out->holder_alive = shmlease__rt_owner_alive(rt, own, &pid, &start);
    out->holder_pid = pid ? pid : (int32_t)shmlease__rt_u64(f[2]);
    out->holder_start_time = start;
    out->holder_other_pidns = out->holder_alive < 0;   /* another host or namespace */
}

/* Threads subscribed to KEY's channel: those waiting for it. */
static uint32_t waiting(struct rtable *rt, const char *chan)
{
    struct rcmd cmd = { .argc = 0 };
    shmlease__rcmd_add(&cmd, "PUBSUB", 6);
    shmlease__rcmd_add(&cmd, "NUMSUB", 6);
    shmlease__rcmd_add(&cmd, chan, strlen(chan));
    redisReply *r = NULL;
    if (shmlease__rcall(&rt->pool, -1, &cmd, RCALL_IDEMPOTENT, 0, &r))
        return 0;
    uint32_t n = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER)
        n = (uint32_t)r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

int shmlease__redis_inspect(shmlease_table *t, const char *key, shmlease_info *out)
{
    size_t klen;
    int rc = shmlease__rt_check_key(key, &klen);
    if (rc || !out)
        return rc ? rc : -EINVAL;
    struct rtable *rt = shmlease__rt(t);
    char names[5][RT_KEYNAME_MAX];
    struct rcmd cmd;
    shmlease__rt_lease_cmd(rt, &cmd, key, klen, names);
    redisReply *r = NULL;
    rc = shmlease__rcall(&rt->pool, RS_INSPECT, &cmd, RCALL_IDEMPOTENT, 0, &r);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 0 && r->elements != 6)) {
        freeReplyObject(r);
        return -EPROTO;
    }
    if (r->elements == 0) {
        freeReplyObject(r);
        return -ENOENT;
    }
    memset(out, 0, sizeof *out);
    memcpy(out->key, key, klen);
    fill_info(rt, out, r->element);
    freeReplyObject(r);
    out->waiters = waiting(rt, names[4]);
    return 0;
}

/* One page of the list: calls FN for each lease; *MORE when pages follow. */
static int list_page(struct rtable *rt, unsigned off, int (*fn)(const shmlease_info *, void *),
                     void *arg, int *more)
{
    char live[RT_KEYNAME_MAX], grace[RT_KEYNAME_MAX], pfx[RT_KEYNAME_MAX], offb[24], cnt[24];
    struct rcmd cmd = { .argc = 0 };
    shmlease__rcmd_add(&cmd, "2", 1);
    shmlease__rcmd_add(&cmd, live, shmlease__rt_name(rt, live, "live", 4));
    shmlease__rcmd_add(&cmd, grace, shmlease__rt_name(rt, grace, "grace", 5));
    shmlease__rcmd_add(&cmd, pfx, shmlease__rt_name(rt, pfx, "k:", 2));
    shmlease__rcmd_addu(&cmd, offb, sizeof offb, off);
    shmlease__rcmd_addu(&cmd, cnt, sizeof cnt, LIST_PAGE);
    redisReply *r = NULL;
    int rc = shmlease__rcall(&rt->pool, RS_LIST, &cmd, RCALL_IDEMPOTENT, 0, &r);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || (r->elements - 1) % 7 != 0) {
        freeReplyObject(r);
        return -EPROTO;
    }
    *more = r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1;
    for (size_t i = 1; i + 7 <= r->elements && rc == 0; i += 7) {
        shmlease_info info;
        memset(&info, 0, sizeof info);
        const redisReply *k = r->element[i];
        if (!is_str(k) || k->len > SHMLEASE_KEY_MAX)
            continue;
        memcpy(info.key, k->str, k->len);
        fill_info(rt, &info, r->element + i + 1);
        rc = fn(&info, arg);
    }
    freeReplyObject(r);
    return rc;
}

int shmlease__redis_foreach(shmlease_table *t, int (*fn)(const shmlease_info *, void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    struct rtable *rt = shmlease__rt(t);
    int more = 1, rc = 0;
    for (unsigned off = 0; more && rc == 0; off += LIST_PAGE)
        rc = list_page(rt, off, fn, arg, &more);
    return rc;
}

/* The counter NAME of the flat hash H ("name", "value", ...), 0 if absent. */
static uint64_t counter(const redisReply *h, const char *name)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (is_str(h->element[i]) && h->element[i]->len == strlen(name) &&
            !memcmp(h->element[i]->str, name, h->element[i]->len))
            return shmlease__rt_u64(h->element[i + 1]);
    return 0;
}

static void fill_stats(shmlease_stats *out, const redisReply *m, uint64_t held, uint64_t grace)
{
    out->acquisitions = counter(m, "acquisitions");
    out->contended = counter(m, "contended");
    out->waits = counter(m, "waits");
    out->timeouts = counter(m, "timeouts");
    out->busy = counter(m, "busy");
    out->expirations = counter(m, "expirations");
    out->reclaimed_dead = counter(m, "reclaimed_dead");
    out->renewals = counter(m, "renewals");
    out->lost = counter(m, "lost");
    out->broken = counter(m, "broken");
    out->fencing_counter = counter(m, "tok");
    out->table_epoch = counter(m, "epoch");
    out->format_version = (uint32_t)counter(m, "fmt");
    out->live_keys = (uint32_t)(held + grace);
    out->held = (uint32_t)(held + grace);
}

int shmlease__redis_stats(shmlease_table *t, shmlease_stats *out)
{
    if (!out)
        return -EINVAL;
    struct rtable *rt = shmlease__rt(t);
    char meta[RT_KEYNAME_MAX], live[RT_KEYNAME_MAX], grace[RT_KEYNAME_MAX];
    struct rcmd cmd = { .argc = 0 };
    shmlease__rcmd_add(&cmd, "3", 1);
    shmlease__rcmd_add(&cmd, meta, shmlease__rt_name(rt, meta, "meta", 4));
    shmlease__rcmd_add(&cmd, live, shmlease__rt_name(rt, live, "live", 4));
    shmlease__rcmd_add(&cmd, grace, shmlease__rt_name(rt, grace, "grace", 5));
    redisReply *r = NULL;
    int rc = shmlease__rcall(&rt->pool, RS_STATS, &cmd, RCALL_IDEMPOTENT, 0, &r);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return -EPROTO;
    }
    memset(out, 0, sizeof *out);
    fill_stats(out, r->element[0], shmlease__rt_u64(r->element[1]), shmlease__rt_u64(r->element[2]));
    freeReplyObject(r);
    return 0;
}
