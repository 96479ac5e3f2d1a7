/*
 * Waiting (see wait.h).
 *
 * Waiters sleep on the entry's 32-bit `wake` word (FUTEX_WAIT, not private:
 * the word is shared between processes, docs/failure-modes.md F12) after
 * counting themselves in `waitgen`; a releaser bumps `wake` and calls
 * FUTEX_WAKE only when the count is non-zero, so an uncontended release makes
 * no syscall, and a release wakes ONE sleeper (the others would only find the
 * key taken again), and none while a sleeper woken earlier has not yet looked
 * at the state (the "waking" bit of the waiter word). The count is raised before the waiter re-reads the state
 * word and read by the releaser after its CAS (both sequentially consistent:
 * a store-load pair, docs/memory-ordering.md MO-9): one of them sees the
 * other, so no wake-up is lost. Expiry needs no waker: waiters sleep until
 * the holder's deadline. A holder's death is announced by the kernel: before
 * it sleeps, a waiter registers with its process's death watcher
 * (watcher.c: one thread per process, a pidfd per watched process, reused
 * from wait to wait), which wakes the sleepers when the holder's process
 * ends; they confirm the death with the registry lock before taking the key.
 * Holders that cannot be watched (in another PID namespace, whose PIDs mean
 * nothing here; no pidfd; no thread) are polled: sleeps of WATCH_MS and a
 * look at the registry lock after each. Waiters also wake every IDLE_MS, so
 * that a waiter woken by a release and killed before it could take the key
 * delays the others by that much at most.
 */
#include "wait.h"
#include "cancel.h"
#include "clock.h"
#include "word.h"

#include <errno.h>
#include <limits.h>
#include <urcu/futex.h>

#define WATCH_MS        1u     /* death-poll period of a holder that cannot be watched */
#define IDLE_MS        50u     /* longest sleep of a waiter */
#define FAKE_CLOCK_MS   2u     /* longest sleep with an injected clock */

/* Counts a sleeper in and clears "waking" (word.h; clearing it only ever
 * makes a releaser wake someone, never not); returns the key generation
 * counted in. seq_cst: the store half of the waiter's store-load pair
 * (count, then the state) against a releaser's (state CAS, then the count):
 * docs/memory-ordering.md MO-9. */
static uint32_t waiter_enter(struct shm_entry *e)
{
    uint64_t v = ld_relaxed(&e->waitgen);
    while (!cas_seqcst(&e->waitgen, &v, (v & ~WG_WAKING) + 1))
        ;
    return wg_gen(v);
}

/* Counts a sleeper out and clears "waking": a releaser that skipped its
 * FUTEX_WAKE because it saw "waking" relies on whoever clears it to look at
 * the state afterwards (our caller does, after the fence: MO-9a). The count
 * is left alone if the key changed meanwhile (its word was reset). */
static void waiter_leave(struct shm_entry *e, uint32_t gen)
{
    uint64_t v = ld_relaxed(&e->waitgen);
    while (wg_gen(v) == gen && wg_count(v) != 0 &&
           !cas_relaxed(&e->waitgen, &v, (v & ~WG_WAKING) - 1))
        ;
    fence_seqcst();   /* orders the clear before the caller's next look at the state */
}

/* Verifies that the registration a watch is for still lives (watcher.h). */
struct verify_arg {
    const shmlease_table *t;
    uint32_t slot;
    uint64_t gen;
    shmlease__alive_fn alive;
};

static int holder_verify(void *arg)
{
    const struct verify_arg *v = arg;
    int a = v->alive(v->t, v->slot);
    /* A new registration of the slot means W's holder is gone: look again. */
    if (ld_acquire(&v->t->reg[v->slot].gen) != v->gen)
        return 0;
    return a;
}

/* Registers DW to be woken when the holder of word W (HELD) dies: as
 * shmlease__deathwatch_watch (1 watched, 0 cannot, -1 dead already). The
 * slot's generation is read before its PID (MO-11); a PID of another PID
 * namespace means nothing here. */
static int watch_holder(shmlease_table *t, struct shm_entry *e, uint64_t w, struct deathwatch *dw,
                        shmlease__alive_fn alive)
{
    uint32_t slot = sw_owner(w);
    if (!slot || slot >= SHM_REG_SLOTS)
        return 0;
    const struct shm_reg *r = &t->reg[slot];
    struct verify_arg va = {t, slot, ld_acquire(&r->gen), alive};
    uint64_t ns = ld_relaxed(&r->pidns_ino);
    int32_t pid = ld_relaxed(&r->pid);
    if (!ns || ns != t->my_pidns || pid <= 0)
        return 0;
    struct watch_target wt = {.pid = pid, .tag_a = (uint64_t)(uintptr_t)t,
                              .tag_b = (va.gen << 16) | slot, .verify = holder_verify, .arg = &va};
    return shmlease__deathwatch_watch(dw, e, &wt);
}

/* A wait record in our own registry slot says which key this thread sleeps
 * on, for inspection: unlike the counter, it dies with us (a dead handle's
 * records are not counted). None free: NULL, still wait, unshown. */
static uint32_t *record_wait(shmlease_table *t, const struct shm_entry *e)
{
    uint32_t *recs = t->waits + (size_t)handle_slot(t) * SHM_WAIT_RECORDS;
    uint32_t want = (uint32_t)(e - t->entries) + 1;
    for (uint32_t i = 0; i < SHM_WAIT_RECORDS && handle_slot(t); i++) {
        uint32_t z = 0;
        if (cas_relaxed(&recs[i], &z, want))
            return &recs[i];
    }
    return NULL;
}

/* How long to sleep on W (ms): until its deadline or WAIT_UNTIL, at most CAP. */
static uint64_t sleep_ms(const shmlease_table *t, uint64_t w, uint64_t now, uint64_t wait_until,
                         uint64_t cap)
{
    uint64_t d = sw_kind(w) == SW_FREE ? UINT64_MAX : sw_deadline(w);   /* FREE: no deadline */
    uint64_t until = d < wait_until ? d : wait_until;
    uint64_t ms = until > now ? until - now : 0;
    if (ms > cap)
        ms = cap;
    if (t->fake_clock && ms > FAKE_CLOCK_MS)
        ms = FAKE_CLOCK_MS;
    return ms ? ms : 1;
}

int shmlease__wait_for_change(shmlease_table *t, struct shm_entry *e, uint64_t w, uint64_t now,
                              uint64_t wait_until, struct deathwatch *dw, shmlease__alive_fn alive,
                              shmlease_cancel_token *cancel)
{
    return shmlease__wait_for_change_of(t, e, w, w, now, wait_until, dw, alive, cancel);
}

int shmlease__wait_for_change_of(shmlease_table *t, struct shm_entry *e, uint64_t w, uint64_t watch,
                                 uint64_t now, uint64_t wait_until, struct deathwatch *dw,
                                 shmlease__alive_fn alive, shmlease_cancel_token *cancel)
{
    int watched = 1, watching = 0;   /* watching: registered for this sleep */
    if (sw_kind(watch) == SW_HELD && sw_owner(watch) != handle_slot(t)) {
        watched = watch_holder(t, e, watch, dw, alive);
        if (watched < 0)
            return 1;                          /* dead already: look now */
        watching = watched;
    }
    struct cancel_wait cw;
    if (cancel && shmlease__cancel_enter(cancel, &cw, &e->wake))
        return 0;                              /* cancelled: the caller sees it */
    uint32_t *rec = record_wait(t, e);
    uint32_t gen = waiter_enter(e);
    uint32_t v = ld_acquire(&e->wake);          /* before the state (MO-9), after
                                                   the cancel listing (cancel.c) */
    /* A watcher that saw a process end and bumped the wake word before we
     * read it: its flag (stored before the bump) is seen now, and we do not
     * sleep through the holder's death (MO-10). */
    int fired = watching && ld_acquire(&dw->fired);
    int timed_out = 0;
    if (ld_seqcst(&e->state) == w && !fired) {  /* the load half of waiter_enter's pair */
        struct timespec ts;
        shmlease__ms_to_timespec(sleep_ms(t, watch, now, wait_until, watched ? IDLE_MS : WATCH_MS), &ts);
        timed_out = futex_async((int32_t *)&e->wake, FUTEX_WAIT, (int32_t)v, &ts, NULL, 0) != 0 &&
                    errno == ETIMEDOUT;
    }
    waiter_leave(e, gen);
    if (rec)
        st_relaxed(rec, 0);
    if (cancel)
        shmlease__cancel_leave(cancel, &cw);
    return !watched || timed_out || (watching && ld_acquire(&dw->fired));
}

void shmlease__wake(struct shm_entry *e, int all)
{
    add_release(&e->wake, 1);
    futex_async((int32_t *)&e->wake, FUTEX_WAKE, all ? INT32_MAX : 1, NULL, NULL, 0);
}

/* After a transition of E's state: wakes its sleepers, if it has any. The
 * count is read AFTER the caller's CAS (a waiter raises it BEFORE it looks
 * at the state; both sequentially consistent, a store-load pair on each
 * side), so either the waiter sees the new state or we see the waiter: no
 * wake-up is lost (docs/memory-ordering.md MO-9).
 *
 * Waking one: if a sleeper woken earlier has not yet counted itself out
 * ("waking" still set), it will look at the state after our CAS, so we
 * skip the system call; otherwise we set "waking" and wake one. Under
 * contention a holder that releases and takes the key again many times
 * while the woken waiter is on its way makes one FUTEX_WAKE, not one per
 * release (MO-9a). Every load and CAS here is seq_cst: a "waking" we act on
 * must precede, in the total order, the clear that the woken waiter makes. */
void shmlease__wake_waiters(struct shm_entry *e, int all)
{
    uint64_t v = ld_seqcst(&e->waitgen);
    if (all) {
        if (wg_count(v) != 0)
            shmlease__wake(e, 1);
        return;
    }
    while (wg_count(v) != 0 && !wg_waking(v)) {
        if (cas_seqcst(&e->waitgen, &v, v | WG_WAKING)) {
            shmlease__wake(e, 0);
            return;
        }
        v = ld_seqcst(&e->waitgen);
    }
}
