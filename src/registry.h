/*
 * The registry: registering a handle in a slot (and sweeping the leases a
 * dead previous user of the slot left), unregistering, and repairing the
 * registry's structure after a crash under its mutex.
 */
#ifndef SHMLEASE_REGISTRY_H
#define SHMLEASE_REGISTRY_H

#include "table.h"

#include <stdint.h>

/* Registers T if it is not registered in this process (the first time, and
 * again in a fork child); waits at most LOCK_MS for the registry lock.
 * 0, -EUSERS, -ETIMEDOUT, -EPROTO, -EBADF. */
int  shmlease__ensure_registered(shmlease_table *t, uint64_t lock_ms);
/* Frees T's leases and marks its slot FREE; the caller then closes t->fd,
 * which drops the slot's byte lock (shmlease_close). */
void shmlease__unregister(shmlease_table *t);
/* Frees every lease whose word names slot IDX as owner (a sweep). */
void shmlease__free_owner_leases(shmlease_table *t, uint32_t idx);
/* The registry mutex's repair routine. */
void shmlease__reg_repair(shmlease_table *t);

#endif
