/*
 * Keepalive: the library renews a lease in the background and says when it
 * is lost anyway (include/shmlease.h, "Keepalive"). One thread per process
 * serves every keepalive of the process (keepalive.c).
 *
 * The two hooks below let the lease and table code end a keepalive without
 * a "lost" signal when the holder itself ends the lease or closes the table.
 */
#ifndef SHMLEASE_KEEPALIVE_H
#define SHMLEASE_KEEPALIVE_H

#include "shmlease.h"

#include <stdint.h>

/* A keepalive to add (keepalive_start.c, which renewed LEASE once). */
struct keepalive_new {
    shmlease_table *t;
    const shmlease_lease *lease;         /* renewed just now */
    uint64_t entry, claim;               /* its claim (lease.h: L_ENTRY, L_CLAIM) */
    int (*renew)(shmlease_table *, shmlease_lease *, uint64_t);  /* shmlease_renew */
    uint64_t ttl_ms, interval_ms;
    void (*on_lost)(shmlease_table *, const shmlease_lease *, int, void *);
    void *arg;
};
/* Schedules it on the process's thread (made if need be): 0 and *OUT, or
 * -EEXIST (the claim has a running keepalive), -EMFILE, -ENFILE, -EAGAIN,
 * -ENOMEM. The renewal function is passed in, so that this module needs
 * nothing from the lease code (which calls the hooks below). */
int shmlease__keepalive_add(const struct keepalive_new *n, shmlease_keepalive **out);

/* A lease value of T, claim (ENTRY, CLAIM), is about to be released
 * (release or release_after of it or of any copy): ends that claim's keepalive,
 * if any, without a lost signal, and returns once no renewal of it is in
 * flight, so the release cannot be mistaken for a loss. Call it before the
 * release's CAS. One atomic load when the process has no keepalive. */
void shmlease__keepalive_end(shmlease_table *t, uint64_t entry, uint64_t claim);

/* T is being closed: ends every keepalive of T without a lost signal and
 * returns once none of them renews or runs its callback (unless the caller
 * is that callback). Call it before T is detached. */
void shmlease__keepalive_close(shmlease_table *t);

#endif
