/*
 * Robust process-shared mutexes, for structural changes only (the key index
 * and the registry): the one lock-or-recover path, bounded in time
 * (docs/failure-modes.md F1-F3).
 */
#ifndef SHMLEASE_MUTEX_H
#define SHMLEASE_MUTEX_H

#include "table.h"

#include <pthread.h>
#include <stdint.h>

/* Rebuilds the structure a dead holder may have left half-changed; called
 * with the mutex held, before pthread_mutex_consistent(). Idempotent. */
typedef void (*shmlease_repair_fn)(shmlease_table *t);

/* Initialises M robust and process-shared: 0 or -errno. Only for a segment
 * nobody else can have attached yet. */
int  shmlease__mutex_init(pthread_mutex_t *m);
/* Locks M, waiting at most MS ms (UINT64_MAX: as long as its holder is a
 * live process), and records the caller in REC. On EOWNERDEAD runs REPAIR.
 * 0, -ETIMEDOUT, or -EPROTO when nobody alive can hold it. */
int  shmlease__lock_for(shmlease_table *t, pthread_mutex_t *m, struct shm_lockrec *rec,
                        shmlease_repair_fn repair, uint64_t ms);
/* Clears REC and unlocks M. */
void shmlease__unlock(pthread_mutex_t *m, struct shm_lockrec *rec);

#endif
