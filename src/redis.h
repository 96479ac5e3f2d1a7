/*
 * Redis backend (docs/redis-backend.md): a table handle whose backend is a
 * Redis URL. Each public call checks t->remote first and, when it is set,
 * hands the call to the function of the same name here. This header is the
 * whole interface; rconn.h (connections) and rscripts.h (the server-side
 * scripts) are its parts.
 */
#ifndef SHMLEASE_REDIS_H
#define SHMLEASE_REDIS_H

#include "shmlease.h"
#include "table.h"

#include <stdint.h>

/* Is the Redis backend built in? */
int  shmlease__redis_built(void);

int  shmlease__redis_open(const char *name, const shmlease_options *o, shmlease_table **out);
void shmlease__redis_close(shmlease_table *t);
int  shmlease__redis_unlink(const char *name, const char *backend);

int  shmlease__redis_acquire(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                             shmlease_lease *out);
int  shmlease__redis_renew(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms);
/* grace_ms 0: release */
int  shmlease__redis_release(shmlease_table *t, shmlease_lease *l, uint64_t grace_ms);
/* shmlease_with_lease's end: what fn's own release or release_after of L
 * came to (0 or -ESTALE), or, when fn did not end L, our release's result. */
int  shmlease__redis_end(shmlease_table *t, shmlease_lease *l);
int  shmlease__redis_check(shmlease_table *t, const shmlease_lease *l);
int  shmlease__redis_break(shmlease_table *t, const char *key);

int  shmlease__redis_inspect(shmlease_table *t, const char *key, shmlease_info *out);
int  shmlease__redis_foreach(shmlease_table *t, int (*fn)(const shmlease_info *, void *), void *arg);
int  shmlease__redis_stats(shmlease_table *t, shmlease_stats *out);

#endif
