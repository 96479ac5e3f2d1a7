/*
 * Peer "cas-word": a bare CAS 0->1 / store 0 on a word in the shared mapping.
 * Not a lock anyone should block on (it spins when contended): the floor that
 * no lock can beat.
 */
#include "bench.h"

#include <sched.h>

static int cas_attach(struct pinst *pi) { (void)pi; return 0; }
static void cas_detach(struct pinst *pi) { (void)pi; }

static int cas_try(struct pinst *pi)
{
    (void)pi;
    uint32_t z = 0;
    return __atomic_compare_exchange_n(&g_env.sh->cas_word, &z, 1, 0,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED) ? 0 : 1;
}

static int cas_acquire(struct pinst *pi)
{
    (void)pi;
    uint32_t *w = &g_env.sh->cas_word;
    for (unsigned spins = 0;; spins++) {
        uint32_t z = 0;
        if (__atomic_load_n(w, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(w, &z, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return 0;
        if ((spins & 15) == 15)
            sched_yield();     /* 2 cores, up to 8 spinners: let the holder run */
        else
            cpu_relax();
    }
}

static int cas_release(struct pinst *pi)
{
    (void)pi;
    __atomic_store_n(&g_env.sh->cas_word, 0, __ATOMIC_RELEASE);
    return 0;
}

const struct peer_ops peer_cas_word_ops = {
    "cas-word", cas_attach, cas_try, cas_acquire, cas_release, cas_detach
};
