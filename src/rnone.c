/*
 * Redis backend, when the library is built without it (no hiredis): a
 * backend URL is -EPROTONOSUPPORT, and no handle of this kind exists, so
 * the other entry points are never reached.
 */
#include "redis.h"

#include <errno.h>

int shmlease__redis_built(void) { return 0; }

int shmlease__redis_open(const char *name, const shmlease_options *o, shmlease_table **out)
{
    (void)name, (void)o, (void)out;
    return -EPROTONOSUPPORT;
}

int shmlease__redis_unlink(const char *name, const char *backend)
{
    (void)name, (void)backend;
    return -EPROTONOSUPPORT;
}

void shmlease__redis_close(shmlease_table *t) { (void)t; }
int shmlease__redis_acquire(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                            shmlease_lease *out)
{
    (void)t, (void)key, (void)o, (void)out;
    return -EPROTONOSUPPORT;
}
int shmlease__redis_renew(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms)
{
    (void)t, (void)l, (void)ttl_ms;
    return -EPROTONOSUPPORT;
}
int shmlease__redis_release(shmlease_table *t, shmlease_lease *l, uint64_t grace_ms)
{
    (void)t, (void)l, (void)grace_ms;
    return -EPROTONOSUPPORT;
}
int shmlease__redis_end(shmlease_table *t, shmlease_lease *l) { (void)t, (void)l; return -EPROTONOSUPPORT; }
int shmlease__redis_check(shmlease_table *t, const shmlease_lease *l) { (void)t, (void)l; return -EPROTONOSUPPORT; }
int shmlease__redis_break(shmlease_table *t, const char *key) { (void)t, (void)key; return -EPROTONOSUPPORT; }
int shmlease__redis_inspect(shmlease_table *t, const char *key, shmlease_info *out)
{
    (void)t, (void)key, (void)out;
    return -EPROTONOSUPPORT;
}
int shmlease__redis_foreach(shmlease_table *t, int (*fn)(const shmlease_info *, void *), void *arg)
{
    (void)t, (void)fn, (void)arg;
    return -EPROTONOSUPPORT;
}
int shmlease__redis_stats(shmlease_table *t, shmlease_stats *out) { (void)t, (void)out; return -EPROTONOSUPPORT; }
