/* The lease state word and the bucket word: bit codecs, no memory access. */
#ifndef SHMLEASE_WORD_H
#define SHMLEASE_WORD_H

#include <stdint.h>

/*
 * The lease state word (64 bits):
 *
 *   63..62  kind    RETIRED 0 | FREE 1 | HELD 2 | GRACE 3
 *   HELD:   61..50 owner (registry slot), 49..40 aux, 39..0 deadline
 *   GRACE:  61..50 zero, 49..40 aux, 39..0 deadline (held by nobody)
 *   FREE:   61..50 zero, 49..40 aux, 39..0 zero
 *   RETIRED: 61..50 zero, 49..40 aux (only while a reaper looks), 39..0 zero
 *
 * The deadline lives IN the word, and the word and the claim counter change
 * in one CAS: no reader can see a new owner beside an old deadline, and a
 * lease value (word, claim) names exactly one claim. A lease that was lost
 * (taken over, broken, swept) can never match the state again, because any
 * later claim has a greater claim count; no counter that wraps is involved.
 * Deadlines are milliseconds since the table's created_at (40 bits: 34
 * years), clamped at that horizon.
 */
#define SW_KIND_SHIFT   62
#define SW_RETIRED      UINT64_C(0)
#define SW_FREE         UINT64_C(1)
#define SW_HELD         UINT64_C(2)
#define SW_GRACE        UINT64_C(3)
#define SW_OWNER_SHIFT  50
#define SW_OWNER_BITS   12
#define SW_OWNER_MASK   ((UINT64_C(1) << SW_OWNER_BITS) - 1)
#define SW_DEADLINE_BITS 40
#define SW_DEADLINE_MASK ((UINT64_C(1) << SW_DEADLINE_BITS) - 1)

static inline uint64_t sw_kind(uint64_t w)     { return w >> SW_KIND_SHIFT; }
static inline uint32_t sw_owner(uint64_t w)    { return (uint32_t)((w >> SW_OWNER_SHIFT) & SW_OWNER_MASK); }
static inline uint64_t sw_deadline(uint64_t w) { return w & SW_DEADLINE_MASK; }
static inline uint64_t sw_held(uint32_t owner, uint64_t deadline)
{
    return (SW_HELD << SW_KIND_SHIFT) | ((uint64_t)(owner & SW_OWNER_MASK) << SW_OWNER_SHIFT)
         | (deadline & SW_DEADLINE_MASK);
}
static inline uint64_t sw_grace(uint64_t deadline) { return (SW_GRACE << SW_KIND_SHIFT) | (deadline & SW_DEADLINE_MASK); }
#define SW_FREE_WORD    (SW_FREE << SW_KIND_SHIFT)
#define SW_RETIRED_WORD (SW_RETIRED << SW_KIND_SHIFT)
/*
 * The aux field: bits 49..40 of HELD, GRACE and FREE words (older builds
 * leave them zero, and build fresh words without them). A key's own entry
 * (its gate) keeps there the number of shared-holder slots ever used for
 * the key while the entry lives (docs/state-machine.md, "Shared leases"), so
 * every transition of a gate carries it over; a shared-holder slot keeps
 * there the limit its holder was given.
 */
#define SW_AUX_SHIFT    40
#define SW_AUX_BITS     10
#define SW_AUX_MASK     ((UINT64_C(1) << SW_AUX_BITS) - 1)
static inline uint32_t sw_aux(uint64_t w)
{
    return (uint32_t)((w >> SW_AUX_SHIFT) & SW_AUX_MASK);
}
/* RETIRED with aux: a gate a reaper has retired for a moment to look at
 * its slots (index.c, reap), which readers may still read the slot count
 * from; retired for good, it is RETIRED_WORD. */
static inline uint64_t sw_retired_aux(uint32_t aux)
{
    return ((uint64_t)aux & SW_AUX_MASK) << SW_AUX_SHIFT;
}
static inline uint64_t sw_held_aux(uint32_t owner, uint64_t deadline, uint32_t aux)
{
    return sw_held(owner, deadline) | (((uint64_t)aux & SW_AUX_MASK) << SW_AUX_SHIFT);
}
static inline uint64_t sw_grace_aux(uint64_t deadline, uint32_t aux)
{
    return sw_grace(deadline) | (((uint64_t)aux & SW_AUX_MASK) << SW_AUX_SHIFT);
}
static inline uint64_t sw_free_aux(uint32_t aux)
{
    return SW_FREE_WORD | (((uint64_t)aux & SW_AUX_MASK) << SW_AUX_SHIFT);
}
/* W with its aux field set to AUX (W not RETIRED). */
static inline uint64_t sw_with_aux(uint64_t w, uint32_t aux)
{
    return (w & ~(SW_AUX_MASK << SW_AUX_SHIFT)) | (((uint64_t)aux & SW_AUX_MASK) << SW_AUX_SHIFT);
}

/* NOW + MS, clamped at the 40-bit horizon of deadlines. */
static inline uint64_t sw_deadline_after(uint64_t now, uint64_t ms)
{
    return ms >= SW_DEADLINE_MASK - now ? SW_DEADLINE_MASK : now + ms;
}
/* Held (or in grace) and not expired at table time NOW. */
static inline int sw_live(uint64_t w, uint64_t now)
{
    uint64_t k = sw_kind(w);
    return (k == SW_HELD || k == SW_GRACE) && sw_deadline(w) > now;
}

/*
 * The bucket word of the key index (64 bits):
 *   63..32  tag: the high 32 bits of the key's hash (a filter)
 *   31..0   entry + 1;  the whole word 0 = an empty bucket
 */
#define BW_EMPTY     UINT64_C(0)
#define BW_TAG_SHIFT 32
#define BW_TAG_MASK  (~UINT64_C(0) << BW_TAG_SHIFT)
static inline uint64_t bw_tag(uint64_t hash_or_word) { return hash_or_word & BW_TAG_MASK; }
static inline uint64_t bw_make(uint64_t hash, uint32_t entry) { return bw_tag(hash) | (uint64_t)(entry + 1); }
static inline uint32_t bw_entry(uint64_t b) { return (uint32_t)b - 1; }

/*
 * The waiter word of an entry (64 bits):
 *   63..32  key generation: bumped when the entry is given a new key
 *   31      waking: a releaser woke one sleeper, and no waiter has counted
 *           itself in or out since; releasers then skip their FUTEX_WAKE
 *           (docs/memory-ordering.md MO-9a)
 *   30..0   threads sleeping on the entry (counted by waiters themselves)
 */
#define WG_GEN_SHIFT  32
#define WG_WAKING     (UINT64_C(1) << 31)
#define WG_COUNT_MASK UINT32_C(0x7fffffff)
static inline uint32_t wg_count(uint64_t wg)  { return (uint32_t)wg & WG_COUNT_MASK; }
static inline int      wg_waking(uint64_t wg) { return (wg & WG_WAKING) != 0; }
static inline uint32_t wg_gen(uint64_t wg)    { return (uint32_t)(wg >> WG_GEN_SHIFT); }
/* No waiters, and the generation after WG's. */
static inline uint64_t wg_next_gen(uint64_t wg) { return (uint64_t)(wg_gen(wg) + 1u) << WG_GEN_SHIFT; }

#endif
