/*
 * The key index: which entry holds a key. Lock-free lookups; insertion,
 * retirement and repair under index_mutex.
 */
#ifndef SHMLEASE_INDEX_H
#define SHMLEASE_INDEX_H

#include "key.h"
#include "state.h"
#include "table.h"

#include <stdint.h>

/* Lock-free lookup: the entry holding KB's key, or -1 (maybe wrongly: a miss
 * is confirmed under the lock). *KEY_SEQ (if not NULL) gets the key_seq under
 * which it matched. */
long shmlease__lookup(const shmlease_table *t, const struct keybuf *kb, uint32_t *key_seq);
/* A lookup for readers that must not miss and never write (inspect, break). */
long shmlease__lookup_stable(const shmlease_table *t, const struct keybuf *kb, uint32_t *key_seq);

/* Calls FN(T, entry, ARG) for every entry of the index, in a pass during
 * which the index did not change (FN may see an entry more than once, from
 * passes that were retried). 0, or -EAGAIN when the index kept changing. */
int  shmlease__index_walk(shmlease_table *t, void (*fn)(shmlease_table *, uint32_t, void *), void *arg);

struct shmlease__insert {
    const struct keybuf *kb;   /* in: the key */
    uint32_t owner;            /* in: our registry slot */
    uint64_t ttl_ms;           /* in */
    uint64_t lock_ms;          /* in: longest wait for index_mutex */
    uint32_t aux;              /* in: the aux field of the new word (word.h) */
    int      free_gate;        /* in: insert FREE (a shared key's gate), not HELD */
    int      find_only;        /* in: only find it: -ENOENT if missing */
    int      inserted;         /* out: 1 inserted (HELD by owner), 0 found */
    long     entry;            /* out: the key's entry */
    uint32_t key_seq;          /* out: its key_seq */
    struct lstate state;       /* out, when inserted: the claimed state */
};
/* Finds or inserts INS->kb under index_mutex (INS->inserted says which): 0,
 * or -ENOSPC, -ETIMEDOUT, -EAGAIN (look again), -EPROTO. */
int  shmlease__insert_held(shmlease_table *t, struct shmlease__insert *ins);
/* A place in a key's fair queue (fair.c). */
struct shmlease__enqueue {
    const struct keybuf *kb;   /* in: the key */
    long     queue;            /* in: the key's queue entry, */
    uint32_t queue_kseq;       /* in: under this key_seq */
    uint32_t owner;            /* in: our registry slot */
    uint64_t ttl_ms;           /* in: how long the place lasts unrenewed */
    uint64_t lock_ms;          /* in: longest wait for index_mutex */
    uint64_t ticket;           /* out */
    long     place;            /* out: the place entry, HELD by owner */
    uint32_t place_kseq;       /* out */
    struct lstate place_state; /* out */
};
int shmlease__enqueue(shmlease_table *t, struct shmlease__enqueue *q);
/* The index mutex's repair routine: rebuilds buckets, free list and live
 * count from the entries. */
void shmlease__index_repair(shmlease_table *t);

#endif
