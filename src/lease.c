/*
 * Leases: acquire, renew, release, grace, break, check, and waiting.
 *
 * The state machine of an entry's state word (see internal.h for the bits):
 *
 *            insert (under index_mutex)          acquire: CAS
 *   RETIRED ---------------------------> HELD <------------------- FREE
 *      ^                                 | | |  release: CAS          ^
 *      | retire: CAS (free/expired/dead) | | +-----------------------+
 *      +---------------------------------+ |  release_after: CAS
 *                                          v
 *                                        GRACE --(deadline passes)--> takeable
 *
 *   HELD --renew: CAS (same owner and seq, new deadline)--> HELD
 *   HELD (expired, or owner dead) --takeover: CAS--> HELD (new owner)
 *   HELD/GRACE --break, or sweep of a dead registry slot: CAS--> FREE
 *
 * Each arrow is ONE compare-and-swap from the exact word the actor examined,
 * so a crash between any two instructions leaves the word either before or
 * after the transition, never half-way (PITFALLS 4), and an actor whose view
 * is stale fails its CAS. Because the deadline is inside the word, nobody can
 * see a new owner next to an old deadline (PITFALLS 5).
 *
 * Fencing tokens: drawn from the table's counter (one atomic add) AFTER the
 * claiming CAS, then we check that the word is still ours. So a token is
 * always drawn while its claim is current: anyone who later takes the key
 * over (after expiry, death or break) draws a later, greater token. Tokens
 * are greater than all tokens drawn before, for any key, for the life of the
 * segment.
 *
 * Waiting: waiters sleep on the entry's 32-bit `wake` word (FUTEX_WAIT, not
 * private: the word is shared between processes, PITFALLS 12) after counting
 * themselves in `waitgen`; a releaser bumps `wake` and calls FUTEX_WAKE only
 * when the count is non-zero, so an uncontended release makes no syscall.
 * The count is raised before the waiter re-reads the state word and read by
 * the releaser after its CAS (both sequentially consistent): one of them sees
 * the other, so no wake-up is lost. Expiry needs no waker: waiters sleep until
 * the holder's deadline. A holder's death is announced by the kernel: once a
 * wait is WATCH_AFTER_MS old, a small thread of the waiter's process polls a
 * pidfd of the holder's process (checked against the start time in the
 * registry, so a reused PID is not mistaken for it) and an eventfd by which
 * the waiter stops it; when the process ends, the thread wakes the sleepers,
 * who confirm the death with the registry lock before taking the key. No
 * polling, no cancellation. Younger waits, holders in another PID namespace
 * (whose PIDs mean nothing here) and systems without pidfd sleep in WATCH_MS
 * slices and ask the registry lock at each wake-up. Waiters also wake every
 * IDLE_MS, so that a waiter woken by a release and killed before it could
 * take the key delays the others by that much at most.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <urcu/arch.h>
#include <urcu/futex.h>

#define WATCH_MS        1u     /* sleeps of a young wait; death-poll period when
                                  no death-watch thread can be made */
#define WATCH_AFTER_MS  2u     /* a wait this old gets a death-watch thread:
                                  most waits end sooner, with a release, and
                                  should not pay for making a thread */
#define IDLE_MS        50u     /* longest sleep of a waiter */
#define FAKE_CLOCK_MS   2u     /* longest sleep with an injected clock */
#define STRUCT_TRY_MS 100u     /* a try waits this long for a structural lock
                                  whose holder is stopped, then -EBUSY */
#define TTL_HORIZON     W_DEADLINE_MASK

/* Private lease fields. */
#define L_ENTRY(l)  ((l)->_private[0])
#define L_WORD(l)   ((l)->_private[1])
#define L_REG(l)    ((l)->_private[2])       /* the handle's regword when acquired */
#define L_EPOCH(l)  ((l)->_private[3])       /* table epoch: catches foreign leases */

/* A token that is not an acquisition's (break, sweep, close): counted apart
 * so that acquisitions = fence - other_tokens, with no second atomic add on
 * the acquire path. */
uint64_t shmlease__fresh_token(shmlease_table *t)
{
    STAT_ADD(t, cold, other_tokens);
    return __atomic_add_fetch(&t->hdr->hot.fence, 1, __ATOMIC_SEQ_CST);
}

static inline uint64_t acquire_token(shmlease_table *t)
{
    return __atomic_add_fetch(&t->hdr->hot.fence, 1, __ATOMIC_SEQ_CST);
}

static inline uint64_t deadline_after(uint64_t now, uint64_t ms)
{
    return ms >= TTL_HORIZON - now ? TTL_HORIZON : now + ms;
}

/* When an acquire with options O, first waiting at table time NOW, gives up. */
static inline uint64_t wait_deadline(const shmlease_acquire_opts *o, uint64_t now)
{
    return o->wait_ms == SHMLEASE_WAIT_FOREVER ? UINT64_MAX : deadline_after(now, (uint64_t)o->wait_ms);
}

/* Fast check that the handle may use its registration (not a fork child that
 * has yet to re-register). */
static inline int handle_ready(shmlease_table *t)
{
    if (likely(my_slot(t) != 0))
        return 0;
    return shmlease__ensure_registered(t);
}

/* Writes token and metadata of the claim W into E's publication block, under
 * the block's seqlock (pub_seq odd while writing). Only the claimer writes it,
 * right after its CAS; a former owner that was paused past its deadline sees
 * the word is no longer its own and does not write. (If it were paused exactly
 * between that check and its stores and resumed during the new owner's
 * publication, inspection could show a mixed block for that claim; readers
 * check the block's tag against the state word, and nothing but display reads
 * the block, so ownership is never affected.) */
static void publish(struct shm_entry *e, uint64_t w, uint64_t token, const void *meta, size_t len)
{
    uint32_t s = __atomic_load_n(&e->pub_seq, __ATOMIC_RELAXED);
    if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != w)
        return;
    __atomic_store_n(&e->pub_seq, (s | 1), __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&e->pub_token, token, __ATOMIC_RELAXED);
    uint32_t old_len = __atomic_load_n(&e->meta_len, __ATOMIC_RELAXED);
    if (len || old_len) {
        __atomic_store_n(&e->meta_len, (uint32_t)len, __ATOMIC_RELAXED);
        size_t full = len / 8, i;
        for (i = 0; i < full; i++) {
            uint64_t v;
            memcpy(&v, (const uint8_t *)meta + 8 * i, 8);
            __atomic_store_n((uint64_t *)(void *)(e->meta + 8 * i), v, __ATOMIC_RELAXED);
        }
        if (len % 8) {
            uint64_t v = 0;
            memcpy(&v, (const uint8_t *)meta + 8 * i, len % 8);
            __atomic_store_n((uint64_t *)(void *)(e->meta + 8 * i), v, __ATOMIC_RELAXED);
        }
    }
    __atomic_store_n(&e->pub_tag, w_tag(w), __ATOMIC_RELAXED);
    __atomic_store_n(&e->pub_seq, (s | 1) + 1, __ATOMIC_RELEASE);
}

/* Waiter bookkeeping: returns the key generation counted in. */
static uint32_t waiter_enter(struct shm_entry *e)
{
    uint64_t v = __atomic_load_n(&e->waitgen, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&e->waitgen, &v, v + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
    return (uint32_t)(v >> 32);
}

static void waiter_leave(struct shm_entry *e, uint32_t gen)
{
    uint64_t v = __atomic_load_n(&e->waitgen, __ATOMIC_RELAXED);
    while ((uint32_t)(v >> 32) == gen && (uint32_t)v != 0 &&
           !__atomic_compare_exchange_n(&e->waitgen, &v, v - 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
}

static inline void wake_waiters(struct shm_entry *e, int all)
{
    if ((uint32_t)__atomic_load_n(&e->waitgen, __ATOMIC_SEQ_CST) != 0)
        shmlease__wake(e, all);
}

/* ---- death watch ---------------------------------------------------------- */

struct deathwatch {
    struct shm_entry *e;
    uint32_t owner;            /* registry slot watched */
    int      running;          /* thread made, not yet joined */
    int      fired;            /* the holder's process ended (atomic) */
    int      pidfd, stopfd;
    pthread_t th;
};

static void *deathwatch_main(void *arg)
{
    struct deathwatch *dw = arg;
    struct pollfd p[2] = {{.fd = dw->pidfd, .events = POLLIN}, {.fd = dw->stopfd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            __atomic_store_n(&dw->fired, 1, __ATOMIC_SEQ_CST);
            shmlease__wake(dw->e, 1);
        }
        return NULL;                           /* fired, or told to stop */
    }
}

static void deathwatch_stop(struct deathwatch *dw)
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
}

/* Starts watching the process registered in slot OWNER while we sleep on E.
 * 0 when watched (or known gone: fired), -1 when it cannot be watched (a
 * holder in another PID namespace, no pidfd): the caller polls instead. */
static int deathwatch_start(struct deathwatch *dw, shmlease_table *t, struct shm_entry *e, uint32_t owner)
{
    if (dw->owner == owner && dw->e == e && (dw->running || __atomic_load_n(&dw->fired, __ATOMIC_SEQ_CST)))
        return 0;
    deathwatch_stop(dw);
    dw->e = e;
    dw->owner = owner;
    dw->fired = 0;
    const struct shm_reg *r = &t->reg[owner];
    uint64_t ns = __atomic_load_n(&r->pidns_ino, __ATOMIC_RELAXED);
    int32_t pid = __atomic_load_n(&r->pid, __ATOMIC_RELAXED);
    uint64_t start = __atomic_load_n(&r->start_time, __ATOMIC_RELAXED);
    if (!ns || ns != t->my_pidns || pid <= 0 || !start)
        return -1;                             /* its PID means nothing here */
    dw->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (dw->pidfd < 0) {
        if (errno != ESRCH)
            return -1;
        __atomic_store_n(&dw->fired, 1, __ATOMIC_SEQ_CST);   /* gone already */
        return 0;
    }
    /* The pidfd pins a process; make sure it is the registered one and not
     * a newcomer that got the same PID (PITFALLS 7). */
    if (shmlease__proc_start_time(pid) != start) {
        __atomic_store_n(&dw->fired, 1, __ATOMIC_SEQ_CST);
        return 0;
    }
    dw->stopfd = eventfd(0, EFD_CLOEXEC);
    if (dw->stopfd < 0)
        return -1;
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0)
        return -1;
    pthread_attr_setstacksize(&a, PTHREAD_STACK_MIN > 65536 ? PTHREAD_STACK_MIN : 65536);
    int rc = pthread_create(&dw->th, &a, deathwatch_main, dw);
    pthread_attr_destroy(&a);
    if (rc != 0)
        return -1;
    dw->running = 1;
    return 0;
}

/*
 * Sleeps until the entry may have changed: released, deadline reached, the
 * holder's death, or the caller's wait deadline. W is the word that made us
 * wait; OWNER its live holder (0 for a grace period).
 */
static void wait_for_change(shmlease_table *t, struct shm_entry *e, uint64_t w, uint32_t owner,
                            uint64_t now, uint64_t wait_until, struct deathwatch *dw, int young)
{
    uint64_t cap = IDLE_MS;
    if (young)
        cap = WATCH_MS;                        /* short, and no watch thread yet */
    else if (owner && owner != my_slot(t) && deathwatch_start(dw, t, e, owner) != 0)
        cap = WATCH_MS;                        /* no thread: poll liveness */
    /* A wait record in our own registry slot says which key this thread
     * sleeps on, for inspection: unlike the counter, it dies with us (a dead
     * handle's records are not counted). None free: still wait, unshown. */
    uint32_t *rec = NULL, *recs = t->waits + (size_t)my_slot(t) * WAIT_RECORDS;
    uint32_t want = (uint32_t)(e - t->entries) + 1;
    for (uint32_t i = 0; i < WAIT_RECORDS && my_slot(t); i++) {
        uint32_t z = 0;
        if (__atomic_compare_exchange_n(&recs[i], &z, want, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            rec = &recs[i];
            break;
        }
    }
    uint32_t gen = waiter_enter(e);
    uint32_t v = __atomic_load_n(&e->wake, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&e->state, __ATOMIC_SEQ_CST) != w ||
        (owner && dw->owner == owner && dw->e == e && __atomic_load_n(&dw->fired, __ATOMIC_SEQ_CST))) {
        waiter_leave(e, gen);
        if (rec)
            __atomic_store_n(rec, 0, __ATOMIC_RELAXED);
        return;
    }
    uint64_t until = w_deadline(w) < wait_until ? w_deadline(w) : wait_until;
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
    waiter_leave(e, gen);
    if (rec)
        __atomic_store_n(rec, 0, __ATOMIC_RELAXED);
}

static int acquire_inner(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                         shmlease_lease *out, struct deathwatch *dwp);

static int validate_acquire(const shmlease_table *t, const shmlease_acquire_opts *o, const char *key,
                            struct keybuf *kb)
{
    if (!t || !o)
        return -EINVAL;
    int rc = shmlease__key_prepare(t, key, kb);
    if (rc)
        return rc;
    if (o->ttl_ms == 0 || o->wait_ms < SHMLEASE_WAIT_FOREVER)
        return -EINVAL;
    if (o->metadata_len > SHMLEASE_METADATA_MAX || (o->metadata_len && !o->metadata))
        return -EINVAL;
    return 0;
}

SHM_API int shmlease_acquire(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                             shmlease_lease *out)
{
    struct deathwatch dw = {.pidfd = -1, .stopfd = -1};
    int rc = acquire_inner(t, key, o, out, &dw);
    deathwatch_stop(&dw);
    return rc;
}

static int acquire_inner(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                         shmlease_lease *out, struct deathwatch *dwp)
{
    struct keybuf kb;
    int rc = validate_acquire(t, o, key, &kb);
    if (rc)
        return rc;
    if (!out)
        return -EINVAL;
    if (t->readonly)
        return -EPERM;
    if ((rc = handle_ready(t)) != 0)
        return rc;

    const uint64_t rw = reg_load(t);
    const uint32_t me = reg_slot(rw);
    if (!me)
        return -ESTALE;              /* cannot happen: handle_ready() registered us */
    struct tbracket tb;
    uint64_t wait_until = 0;         /* computed with the precise clock when first needed */
    int counted_contended = 0, counted_wait = 0;
    unsigned sleeps = 0;
    uint64_t wait_start = 0;

    int slow = 0;
    for (;;) {
        uint32_t kseq = 0;
        uint64_t w;
        /* After finding a retired entry, look up under index_mutex: the
         * retirer may have died before unlinking it, and the lock's recovery
         * is what rebuilds the index. */
        long ei = slow ? -1 : shmlease__lookup(t, &kb, &kseq);
        slow = 0;
        if (ei < 0) {
            shmlease__time_exact(t, &tb);
            uint64_t proto = w_make_held(me, 0, deadline_after(tb.lo, o->ttl_ms));
            /* The structural lock is held for microseconds, unless its holder
             * is stopped: then give up as the caller's wait says (a try
             * allows STRUCT_TRY_MS). */
            uint64_t lock_ms = UINT64_MAX;
            if (o->wait_ms == 0) {
                lock_ms = STRUCT_TRY_MS;
            } else if (o->wait_ms != SHMLEASE_WAIT_FOREVER) {
                if (!wait_until)
                    wait_until = wait_deadline(o, tb.lo);
                lock_ms = wait_until > tb.lo ? wait_until - tb.lo : 0;
            }
            ei = shmlease__insert_held(t, &kb, proto, &w, &kseq, lock_ms);
            if (ei == -EAGAIN)
                continue;
            if (ei == -ETIMEDOUT) {
                if (o->wait_ms == 0) {
                    STAT_ADD(t, cold, busy);
                    return -EBUSY;
                }
                STAT_ADD(t, cold, timeouts);
                return -ETIMEDOUT;
            }
            if (ei < 0)
                return (int)ei;
            if (w != 0)
                goto claimed;          /* inserted, already ours */
        }
        struct shm_entry *e = &t->entries[ei];

        for (;;) {
            w = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
            /* The word belongs to our key only if the key did not change. */
            if (w_kind(w) == W_RETIRED || __atomic_load_n(&e->key_seq, __ATOMIC_ACQUIRE) != kseq) {
                slow = 1;              /* retired or reused: look up again, locked */
                break;
            }
            shmlease__time_exact(t, &tb);
            uint64_t k = w_kind(w);
            int take = 0, expired = 0, dead = 0;
            uint32_t owner = 0;
            if (k == W_FREE) {
                take = 1;
            } else if (shmlease__passed(t, &tb, w_deadline(w))) {
                take = 1;
                expired = (k == W_HELD);
            } else if (k == W_HELD) {
                owner = w_owner(w);
                /* Ask the kernel (the registry lock is the only proof of
                 * death), except before the first (short) sleep of a waiting
                 * acquire: most waits end with a release, and the syscall
                 * would only slow the handoff. */
                if (owner != me && (o->wait_ms == 0 || sleeps > 0) && shmlease__alive(t, owner) == 0)
                    take = dead = 1;
            }
            if (take) {
                uint64_t nw = w_make_held(me, w_next_seq(w), deadline_after(tb.lo, o->ttl_ms));
                if (!__atomic_compare_exchange_n(&e->state, &w, nw, 0, __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE))
                    continue;
                if (expired)
                    STAT_ADD(t, cold, expirations);
                if (dead)
                    STAT_ADD(t, cold, reclaimed_dead);
                w = nw;
                goto claimed;
            }
            /* Held by someone else (or by us: leases are not re-entrant). */
            if (!counted_contended) {
                counted_contended = 1;
                STAT_ADD(t, cold, contended);
            }
            if (o->wait_ms == 0) {
                STAT_ADD(t, cold, busy);
                return -EBUSY;
            }
            uint64_t now = tb.lo;      /* exact: read at the top of this pass */
            if (!wait_until)
                wait_until = wait_deadline(o, now);
            if (now >= wait_until) {
                STAT_ADD(t, cold, timeouts);
                wake_waiters(e, 0);    /* pass on a wake-up we may have consumed */
                return -ETIMEDOUT;
            }
            if (!counted_wait) {
                counted_wait = 1;
                STAT_ADD(t, cold, waits);
            }
            if (sleeps == 0)
                wait_start = now;
            wait_for_change(t, e, w, owner, now, wait_until, dwp, now - wait_start < WATCH_AFTER_MS);
            sleeps++;
        }
        continue;

    claimed:
        SHMLEASE_FAULT("acquire.after_cas");
        {
            struct shm_entry *ce = &t->entries[ei];
            uint64_t token = acquire_token(t);
            SHMLEASE_FAULT("acquire.after_token");
            /* Still ours after the token was drawn? Then any later owner draws
             * a greater one. If not, we lost it in between: start over. */
            if (__atomic_load_n(&ce->state, __ATOMIC_SEQ_CST) != w) {
                STAT_ADD(t, cold, other_tokens);
                continue;
            }
            publish(ce, w, token, o->metadata, o->metadata_len);
            out->fencing_token = token;
            out->expires_at_ms = t->created_at + w_deadline(w);
            L_ENTRY(out) = (uint64_t)ei;
            L_WORD(out) = w;
            L_REG(out) = rw;
            L_EPOCH(out) = t->epoch;
            return 0;
        }
    }
}

/* Checks a lease value against this handle. Returns its entry or a code. */
static long lease_entry(shmlease_table *t, const shmlease_lease *l)
{
    if (!t || !l)
        return -EINVAL;
    if (L_EPOCH(l) != t->epoch || L_ENTRY(l) >= t->capacity || w_kind(L_WORD(l)) != W_HELD)
        return -EINVAL;
    if (t->readonly)
        return -EPERM;
    /* A lease taken before a fork, or through an earlier registration, is not
     * this process's any more. */
    uint64_t rw = reg_load(t);
    uint32_t me = reg_slot(rw);
    if (me == 0 || L_REG(l) != rw || w_owner(L_WORD(l)) != me)
        return -ESTALE;
    return (long)L_ENTRY(l);
}

static int lost(shmlease_table *t)
{
    STAT_ADD(t, cold, lost);
    return -ESTALE;
}

/* One CAS from the lease's word to NW, if the lease is current and unexpired. */
static int lease_cas(shmlease_table *t, shmlease_lease *l, struct shm_entry *e, uint64_t nw,
                     struct tbracket *tb)
{
    uint64_t w = L_WORD(l);
    if (shmlease__passed(t, tb, w_deadline(w)))
        return lost(t);
    if (!__atomic_compare_exchange_n(&e->state, &w, nw, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        return lost(t);
    return 0;
}

SHM_API int shmlease_renew(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms)
{
    long ei = lease_entry(t, l);
    if (ei == -ESTALE)
        return lost(t);
    if (ei < 0)
        return (int)ei;
    if (ttl_ms == 0)
        return -EINVAL;
    struct shm_entry *e = &t->entries[ei];
    struct tbracket tb;
    shmlease__time_exact(t, &tb);
    uint64_t w = L_WORD(l);
    uint64_t nw = w_make_held(w_owner(w), w_seq(w), deadline_after(tb.lo, ttl_ms));
    SHMLEASE_FAULT("renew.before_cas");
    int rc = lease_cas(t, l, e, nw, &tb);
    if (rc)
        return rc;
    /* A shorter deadline may concern waiters sleeping until the old one. */
    if (w_deadline(nw) < w_deadline(w))
        wake_waiters(e, 1);
    L_WORD(l) = nw;
    l->expires_at_ms = t->created_at + w_deadline(nw);
    STAT_ADD(t, hot, renewals);
    return 0;
}

static int end_lease(shmlease_table *t, shmlease_lease *l, uint64_t grace_ms)
{
    long ei = lease_entry(t, l);
    if (ei == -ESTALE)
        return lost(t);
    if (ei < 0)
        return (int)ei;
    struct shm_entry *e = &t->entries[ei];
    struct tbracket tb;
    shmlease__time(t, &tb);
    uint64_t w = L_WORD(l);
    uint64_t nw = grace_ms ? w_make_grace(w_seq(w), deadline_after(tb.hi, grace_ms))
                           : w_make_free(l->fencing_token);
    SHMLEASE_FAULT("release.before_cas");
    int rc = lease_cas(t, l, e, nw, &tb);
    if (rc)
        return rc;
    /* A grace period changes the deadline waiters sleep towards: wake all. */
    wake_waiters(e, grace_ms != 0);
    /* The value is spent: a second release is stale. */
    L_WORD(l) = w_make_held(0, 0, 0);
    return 0;
}

SHM_API int shmlease_release(shmlease_table *t, shmlease_lease *l)
{
    return end_lease(t, l, 0);
}

SHM_API int shmlease_release_after(shmlease_table *t, shmlease_lease *l, uint64_t grace_ms)
{
    return end_lease(t, l, grace_ms);
}

SHM_API int shmlease_check(shmlease_table *t, const shmlease_lease *l)
{
    long ei = lease_entry(t, l);
    if (ei == -ESTALE)
        return lost(t);
    if (ei < 0)
        return (int)ei;
    uint64_t w = __atomic_load_n(&t->entries[ei].state, __ATOMIC_ACQUIRE);
    struct tbracket tb;
    shmlease__time(t, &tb);
    if (w != L_WORD(l) || shmlease__passed(t, &tb, w_deadline(w)))
        return lost(t);
    return 0;
}

SHM_API int shmlease_with(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                          int (*fn)(const shmlease_lease *l, void *arg), void *arg)
{
    if (!fn)
        return -EINVAL;
    shmlease_lease l;
    int rc = shmlease_acquire(t, key, o, &l);
    if (rc)
        return rc;
    int r = fn(&l, arg);
    shmlease_release(t, &l);
    return r;
}

SHM_API int shmlease_break(shmlease_table *t, const char *key)
{
    struct keybuf kb;
    if (!t)
        return -EINVAL;
    int rc = shmlease__key_prepare(t, key, &kb);
    if (rc)
        return rc;
    if (t->readonly)
        return -EPERM;
    struct shm_entry *e;
    for (;;) {
        uint32_t kseq;
        long ei = shmlease__lookup_stable(t, &kb, &kseq);
        if (ei < 0)
            return -ENOENT;
        e = &t->entries[ei];
        uint64_t w = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&e->key_seq, __ATOMIC_ACQUIRE) != kseq)
            continue;                  /* entry reused for another key meanwhile */
        if (!w_live(w, shmlease__now_rel(t)))
            return -ENOENT;
        uint64_t nw = w_make_free(shmlease__fresh_token(t));
        if (__atomic_compare_exchange_n(&e->state, &w, nw, 0, __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE))
            break;
    }
    wake_waiters(e, 1);
    STAT_ADD(t, cold, broken);
    return 0;
}
