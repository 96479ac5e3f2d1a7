/*
 * Waiting (see wait.h).
 *
 * Waiters sleep on the entry's 32-bit `wake` word (FUTEX_WAIT, not private:
 * the word is shared between processes, docs/failure-modes.md F12) after
 * counting themselves in `waitgen`; a releaser bumps `wake` and calls
 * FUTEX_WAKE only when the count is non-zero, so an uncontended release makes
 * no syscall. The count is raised before the waiter re-reads the state word
 * and read by the releaser after its CAS (both sequentially consistent: a
 * store-load pair, docs/memory-ordering.md): one of them sees the other, so
 * no wake-up is lost. Expiry needs no waker: waiters sleep until the
 * holder's deadline. A holder's death is announced by the kernel: once a
 * wait is WAIT_WATCH_AFTER_MS old, a small thread of the waiter's process
 * polls a pidfd of the holder's process (checked against the start time in
 * the registry, so a reused PID is not mistaken for it) and an eventfd by
 * which the waiter stops it; when the process ends, the thread wakes the
 * sleepers, who confirm the death with the registry lock before taking the
 * key. Younger waits, holders in another PID namespace (whose PIDs mean
 * nothing here) and systems without pidfd sleep in WATCH_MS slices and ask
 * the registry lock at each wake-up. Waiters also wake every IDLE_MS, so
 * that a waiter woken by a release and killed before it could take the key
 * delays the others by that much at most.
 */
#include "wait.h"
#include "clock.h"
#include "proc.h"
#include "word.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <urcu/futex.h>

#define WATCH_MS        1u     /* sleeps of a young wait; death-poll period when
                                  no death-watch thread can be made */
#define IDLE_MS        50u     /* longest sleep of a waiter */
#define FAKE_CLOCK_MS   2u     /* longest sleep with an injected clock */

/* Counts a sleeper in; returns the key generation counted in. seq_cst: the
 * store half of the waiter's store-load pair (count, then the state) against
 * a releaser's (state CAS, then the count): docs/memory-ordering.md MO-9. */
static uint32_t waiter_enter(struct shm_entry *e)
{
    uint64_t v = ld_relaxed(&e->waitgen);
    while (!cas_seqcst(&e->waitgen, &v, v + 1))
        ;
    return wg_gen(v);
}

/* Counts a sleeper out (relaxed: a count left high for a moment only costs a
 * waker an empty FUTEX_WAKE; MO-10). Nothing if the key changed meanwhile. */
static void waiter_leave(struct shm_entry *e, uint32_t gen)
{
    uint64_t v = ld_relaxed(&e->waitgen);
    while (wg_gen(v) == gen && wg_count(v) != 0 &&
           !cas_relaxed(&e->waitgen, &v, v - 1))
        ;
}

static void *deathwatch_main(void *arg)
{
    struct deathwatch *dw = arg;
    struct pollfd p[2] = {{.fd = dw->pidfd, .events = POLLIN}, {.fd = dw->stopfd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            st_release(&dw->fired, 1);
            shmlease__wake(dw->e, 1);
        }
        return NULL;                           /* fired, or told to stop */
    }
}

void shmlease__deathwatch_stop(struct deathwatch *dw)
{
    if (dw->running) {
        uint64_t one = 1;
        ssize_t n;
        do {
            n = write(dw->stopfd, &one, sizeof one);
        } while (n < 0 && errno == EINTR);
        pthread_join(dw->th, NULL);
        dw->running = 0;
    }
    if (dw->pidfd >= 0)
        close(dw->pidfd);
    if (dw->stopfd >= 0)
        close(dw->stopfd);
    dw->pidfd = dw->stopfd = -1;
    dw->e = NULL;                              /* watches nothing now */
}

/* Is the watch about registration H of the holder of E? */
static int deathwatch_is(const struct deathwatch *dw, const struct shm_entry *e, struct holder h)
{
    return dw->e == e && dw->h.slot == h.slot && dw->h.gen == h.gen;
}

/* Starts watching registration H (the holder of E) while we sleep on E.
 * 1 when a thread watches it, 0 when it cannot be watched: a holder in
 * another PID namespace (its PID means nothing here), a process whose
 * identity cannot be read (/proc hidden), no pidfd or thread, or a watch that
 * already fired. The caller then sleeps in short slices and asks the
 * registry lock, the only proof of death, at each wake-up. */
static int deathwatch_start(struct deathwatch *dw, shmlease_table *t, struct shm_entry *e, struct holder h)
{
    if (deathwatch_is(dw, e, h))
        return dw->running && !ld_acquire(&dw->fired);
    shmlease__deathwatch_stop(dw);
    dw->e = e;
    dw->h = h;
    dw->fired = 0;
    const struct shm_reg *r = &t->reg[h.slot];
    uint64_t ns = ld_relaxed(&r->pidns_ino);
    int32_t pid = ld_relaxed(&r->pid);
    uint64_t start = ld_relaxed(&r->start_time);
    if (!ns || ns != t->my_pidns || pid <= 0 || !start)
        return 0;
    dw->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (dw->pidfd < 0)
        return 0;                              /* gone already, or no pidfd */
    /* The pidfd pins a process; make sure it is the registered one and not
     * a newcomer that got the same PID (docs/failure-modes.md F7). Unreadable (hidden
     * /proc): cannot tell, so no watch. */
    if (shmlease__proc_start_time(pid) != start)
        return 0;
    dw->stopfd = eventfd(0, EFD_CLOEXEC);
    if (dw->stopfd < 0)
        return 0;
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0)
        return 0;
    pthread_attr_setstacksize(&a, PTHREAD_STACK_MIN > 65536 ? PTHREAD_STACK_MIN : 65536);
    int rc = pthread_create(&dw->th, &a, deathwatch_main, dw);
    pthread_attr_destroy(&a);
    if (rc != 0)
        return 0;
    dw->running = 1;
    return 1;
}

/* The registration that holds word W (HELD): its slot and the slot's
 * generation now. If the slot was reused since W was read, W is no longer
 * the state and the caller's next look sees that. */
static struct holder holder_of(const shmlease_table *t, uint64_t w)
{
    struct holder h = {sw_owner(w), 0};
    if (h.slot && h.slot < SHM_REG_SLOTS)
        h.gen = ld_acquire(&t->reg[h.slot].gen);
    return h;
}

void shmlease__wait_for_change(shmlease_table *t, struct shm_entry *e, uint64_t w, uint64_t now,
                            uint64_t wait_until, struct deathwatch *dw, int young)
{
    uint64_t cap = IDLE_MS;
    int watched = 0;
    /* A young wait has no watch thread yet; an older one without a watch
     * asks the registry lock at every short sleep. */
    if (sw_kind(w) == SW_HELD && sw_owner(w) != handle_slot(t)) {
        watched = !young && deathwatch_start(dw, t, e, holder_of(t, w));
        if (!watched)
            cap = WATCH_MS;
    }
    /* A wait record in our own registry slot says which key this thread
     * sleeps on, for inspection: unlike the counter, it dies with us (a dead
     * handle's records are not counted). None free: still wait, unshown. */
    uint32_t *rec = NULL, *recs = t->waits + (size_t)handle_slot(t) * SHM_WAIT_RECORDS;
    uint32_t want = (uint32_t)(e - t->entries) + 1;
    for (uint32_t i = 0; i < SHM_WAIT_RECORDS && handle_slot(t); i++) {
        uint32_t z = 0;
        if (cas_relaxed(&recs[i], &z, want)) {
            rec = &recs[i];
            break;
        }
    }
    uint32_t gen = waiter_enter(e);
    uint32_t v = ld_acquire(&e->wake);          /* before the state (MO-9) */
    /* A watch that fired after deathwatch_start looked but bumped the wake
     * word before we read it: its flag (stored before the bump) is seen now,
     * and we do not sleep through the holder's death (MO-10). */
    int fired = watched && ld_acquire(&dw->fired);
    if (ld_seqcst(&e->state) == w && !fired) {  /* the load half of waiter_enter's pair */
        uint64_t until = sw_deadline(w) < wait_until ? sw_deadline(w) : wait_until;
        uint64_t ms = until > now ? until - now : 0;
        if (ms > cap)
            ms = cap;
        if (t->fake_clock && ms > FAKE_CLOCK_MS)
            ms = FAKE_CLOCK_MS;
        if (ms == 0)
            ms = 1;
        struct timespec ts;
        shmlease__ms_to_timespec(ms, &ts);
        futex_async((int32_t *)&e->wake, FUTEX_WAIT, (int32_t)v, &ts, NULL, 0);
    }
    waiter_leave(e, gen);
    if (rec)
        st_relaxed(rec, 0);
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
 * wake-up is lost (docs/memory-ordering.md MO-9). */
void shmlease__wake_waiters(struct shm_entry *e, int all)
{
    if (wg_count(ld_seqcst(&e->waitgen)) != 0)
        shmlease__wake(e, all);
}
