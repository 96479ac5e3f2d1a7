/*
 * The acquire calls of the API: shmlease_acquire, which runs an exclusive
 * (acquire.c) or a shared (shared.c) acquire, and the calls made of it.
 */
#include "redis.h"
#include "acquire.h"
#include "compiler.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

SHM_API int shmlease_acquire(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                             shmlease_lease *out)
{
    if (t && t->remote)
        return shmlease__redis_acquire(t, key, o, out);
    /* Every field but the key buffer, which key_prepare fills (zeroing its
     * 128 bytes on every call costs more than the rest of this). */
    struct acquire a;
    memset(&a, 0, offsetof(struct acquire, kb));
    shmlease__deathwatch_init(&a.dw);
    int rc = shmlease__acquire_begin(&a, t, key, o, out);
    if (rc == 0)
        rc = (o->flags & SHMLEASE_ACQUIRE_FAIR) ? shmlease__acquire_fair(&a, out)
             : o->mode == SHMLEASE_SHARED    ? shmlease__acquire_shared(&a, out)
                                             : shmlease__acquire_exclusive(&a, out);
    shmlease__deathwatch_stop(&a.dw);
    return rc;
}

SHM_API int shmlease_with(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                          int (*fn)(const shmlease_lease *l, void *arg), void *arg)
{
    if (!fn)
        return -EINVAL;
    shmlease_lease l;
    int rc = shmlease_acquire(t, key, o, &l);
    if (rc)
        return rc;
    int r = fn(&l, arg);
    shmlease_release(t, &l);
    return r;
}

SHM_API int shmlease_with_lease(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                                int (*fn)(shmlease_table *t, shmlease_lease *l, void *arg),
                                void *arg, int *fn_result)
{
    if (!fn)
        return -EINVAL;
    shmlease_lease l;
    int rc = shmlease_acquire(t, key, o, &l);
    if (rc)
        return rc;
    int r = fn(t, &l, arg);
    if (fn_result)
        *fn_result = r;
    /* fn may have ended the lease itself (release, release_after): then its
     * end decides; otherwise ours does. Either way 0 means the lease was ours
     * from the acquire to the end. */
    if (t->remote)
        return shmlease__redis_end(t, &l);
    if (sw_owner(L_WORD(&l)) == 0)
        return lease_ended_in_time(&l) ? 0 : -ESTALE;
    return shmlease_release(t, &l);
}
