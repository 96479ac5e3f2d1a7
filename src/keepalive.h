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

/* A lease value of T is about to be released (release or release_after of
 * it or of any copy: same entry and claim): ends that lease's keepalive,
 * if any, without a lost signal, and returns once no renewal of it is in
 * flight, so the release cannot be mistaken for a loss. Call it before the
 * release's CAS. One atomic load when the process has no keepalive. */
void shmlease__keepalive_end(shmlease_table *t, const shmlease_lease *l);

/* T is being closed: ends every keepalive of T without a lost signal and
 * returns once none of them renews or runs its callback (unless the caller
 * is that callback). Call it before T is detached. */
void shmlease__keepalive_close(shmlease_table *t);

#endif
