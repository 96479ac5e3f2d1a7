/*
 * Atomics: every access to a word of the segment that another process (or
 * thread) may change at the same time goes through one of these, so that the
 * ordering of each access is named where it happens.
 *
 * Ordering policy (the argument is in docs/memory-ordering.md):
 *   - relaxed     counters, display-only fields, and words whose reader
 *                 validates what it read by a later acquire load (seqlocks)
 *                 or by a compare-and-swap;
 *   - release     the store that publishes a change (a seqlock's closing
 *                 store, READY, a registry slot's state, a bucket word);
 *   - acquire     the load that consumes such a publication;
 *   - seq_cst     where two parties each store then load the other's word
 *                 (a store-load "Dekker" pair: a waiter counts itself then
 *                 reads the lease state, a releaser changes the state then
 *                 reads the count; nothing weaker forbids both from missing
 *                 the other), and the fencing-token draw (MO-4). Each use
 *                 says why at the call. The 16-byte lease CAS is
 *                 sequentially consistent by nature (a locked instruction).
 * Plain (non-atomic) accesses to shared words are allowed only under the
 * structural mutex that guards them and only for words that no lock-free
 * reader reads.
 */
#ifndef SHMLEASE_ATOMICS_H
#define SHMLEASE_ATOMICS_H

#define ld_relaxed(p)        __atomic_load_n((p), __ATOMIC_RELAXED)
#define ld_acquire(p)        __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ld_seqcst(p)         __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define st_relaxed(p, v)     __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define st_release(p, v)     __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define fence_acquire()      __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define fence_release()      __atomic_thread_fence(__ATOMIC_RELEASE)
#define fence_seqcst()       __atomic_thread_fence(__ATOMIC_SEQ_CST)
/* Read-modify-writes: the new value (add_*) or a strong compare-and-swap
 * that stores the current value in *(expp) when it fails (cas_*). */
#define add_relaxed(p, v)    __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define add_release(p, v)    __atomic_add_fetch((p), (v), __ATOMIC_RELEASE)
#define add_seqcst(p, v)     __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define cas_relaxed(p, expp, v) \
    __atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)
#define cas_seqcst(p, expp, v) \
    __atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)
#define xchg_acqrel(p, v)    __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)

/* A 16-byte compare-and-swap of the pair at P (16-byte aligned): cmpxchg16b
 * on x86-64, inlined with -mcx16, never a call into libatomic (whose
 * fallback uses process-local locks, useless between processes). */
typedef unsigned __int128 shmlease_u128;
static inline int cas16(void *p, shmlease_u128 old, shmlease_u128 nw)
{
    return __sync_bool_compare_and_swap((shmlease_u128 *)p, old, nw);
}

#endif
