/*
 * shmlease_keepalive_start: checks the options, renews the lease once in
 * the caller, and hands it to the process's keepalive thread (keepalive.c).
 * Apart from keepalive.c because it uses the lease code (the first renewal,
 * the lease value's claim), which itself calls keepalive.c's hooks.
 */
#include "keepalive.h"
#include "abi.h"
#include "compiler.h"
#include "lease.h"

#include <errno.h>

SHM_API int shmlease_keepalive_start(shmlease_table *t, const shmlease_lease *l,
                                     const shmlease_keepalive_opts *o, shmlease_keepalive **out)
{
    if (!t || !l || !o || !out)
        return -EINVAL;
    *out = NULL;
    if (!SHMLEASE_RESERVED_ZERO(o) || o->ttl_ms == 0)
        return -EINVAL;
    uint64_t interval = o->interval_ms ? o->interval_ms : o->ttl_ms / 3;
    if (interval == 0)
        interval = 1;
    if (interval >= o->ttl_ms)
        return -EINVAL;                   /* it would never keep the lease */
    /* The first renewal, in the caller: proves the lease is ours now. */
    shmlease_lease copy = *l;
    int rc = shmlease_renew(t, &copy, o->ttl_ms);
    if (rc)
        return rc;
    struct keepalive_new n = {
        .t = t, .lease = &copy, .entry = L_ENTRY(l), .claim = L_CLAIM(l),
        .renew = shmlease_renew, .ttl_ms = o->ttl_ms, .interval_ms = interval,
        .on_lost = o->on_lost, .arg = o->arg,
    };
    return shmlease__keepalive_add(&n, out);
}
