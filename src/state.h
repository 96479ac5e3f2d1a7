/* The 16-byte lease state of an entry: loads, snapshots and the one CAS. */
#ifndef SHMLEASE_STATE_H
#define SHMLEASE_STATE_H

#include "atomics.h"
#include "format.h"
#include "word.h"

/* The 16-byte lease state. Loads are two 8-byte atomic loads: a reader may
 * see the halves of two different states, which only makes its CAS fail (a
 * CAS succeeds only from the exact current pair). Readers that act without
 * a CAS (check, inspect) use ls_snapshot(). */
struct lstate { uint64_t w, c; };

static inline struct lstate ls_load(const struct shm_entry *e)
{
    struct lstate s;
    s.c = ld_acquire(&e->claim);
    s.w = ld_acquire(&e->state);
    return s;
}

/* A pair that was the entry's state at one instant: the claim is read before
 * and after the word, and the claim only grows; while it stays the same, the
 * word read in between belongs to that claim (docs/memory-ordering.md MO-3). */
static inline struct lstate ls_snapshot(const struct shm_entry *e)
{
    for (;;) {
        uint64_t c1 = ld_acquire(&e->claim);
        uint64_t w = ld_acquire(&e->state);
        uint64_t c2 = ld_acquire(&e->claim);
        if (c1 == c2)
            return (struct lstate){w, c1};
    }
}

/* Is the entry's state (w, c) now? (One consistent read.) */
static inline int ls_is(const struct shm_entry *e, uint64_t w, uint64_t c)
{
    struct lstate s = ls_snapshot(e);
    return s.w == w && s.c == c;
}

/* One 16-byte CAS from OLD to NEW. Sequentially consistent, as every
 * lock-prefixed instruction is: the waiter count relies on it
 * (docs/memory-ordering.md MO-1, MO-9). */
static inline int ls_cas(struct shm_entry *e, struct lstate old, struct lstate nw)
{
    shmlease_u128 o = ((shmlease_u128)old.c << 64) | old.w, n = ((shmlease_u128)nw.c << 64) | nw.w;
    return cas16(&e->state, o, n);
}

#endif
