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
 *   HELD --renew: CAS (same owner and claim, new deadline)--> HELD
 *   HELD (expired, or owner dead) --takeover: CAS--> HELD (new owner)
 *   HELD/GRACE --break, or sweep of a dead registry slot: CAS--> FREE
 *
 * Each arrow is ONE 16-byte compare-and-swap of (word, claim) from the exact
 * pair the actor examined, so a crash between any two instructions leaves
 * the state either before or after the transition, never half-way, and an
 * actor whose view is stale fails its CAS. The deadline is inside the word,
 * so nobody can see a new owner next to an old deadline. Arrows into HELD
 * from anything but HELD-by-the-same-claim add one to the claim count, so a
 * lease value (word, claim) matches the state only while its claim lasts:
 * once lost, it is lost for ever, whatever happens to the key afterwards.
 *
 * Deadlines. A lease is lost at its deadline even if nobody has changed the
 * state yet. renew, release and release_after check the clock before their
 * CAS (the fast refusal) and again after it: a CAS cannot be timed, so when
 * the clock read after it has reached the old deadline the call reports the
 * lease lost and undoes what it did (a renewed or graced key is set FREE,
 * which is what the expiry made of it). Hence a call that returns 0 took
 * effect strictly before the deadline.
 *
 * Fencing tokens: drawn from the table's counter (one atomic add) AFTER the
 * claiming CAS, then we check that the state is still ours. So a token is
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
#define FRESH_SLACK_MS  1u     /* an acquire returns at most this much less than its ttl,
                                  as of its last clock read */

/* Private lease fields: the claim the lease names, and whose it is. */
#define L_ENTRY(l)  ((l)->_private[0])
#define L_WORD(l)   ((l)->_private[1])       /* state word of the claim (last renew) */
#define L_CLAIM(l)  ((l)->_private[2])       /* the entry's claim count of this claim */
#define L_REG(l)    ((l)->_private[3])       /* the handle's regword when acquired */
#define L_EPOCH(l)  ((l)->_private[4])       /* table epoch: catches foreign leases */

static inline uint64_t acquire_token(shmlease_table *t)
{
    return __atomic_add_fetch(&t->hdr->hot.fence, 1, __ATOMIC_SEQ_CST);
}


/* When an acquire with options O, first waiting at table time NOW, gives up. */
static inline uint64_t wait_deadline(const shmlease_acquire_opts *o, uint64_t now)
{
    return o->wait_ms == SHMLEASE_WAIT_FOREVER ? UINT64_MAX : w_deadline_after(now, (uint64_t)o->wait_ms);
}

/* Writes token and metadata of claim S into E's publication block, under
 * the block's seqlock (pub_seq odd while writing). Only the claimer writes
 * it, right after its CAS; a former owner paused past its deadline sees that
 * the state is no longer its own and does not write. The block is for
 * display only: readers accept it when its tag matches the claim count, and
 * nothing that decides ownership reads it. */
static void publish(struct shm_entry *e, struct lstate s, uint64_t token, const void *meta, size_t len)
{
    /* Plain stores, not a lock: a writer killed inside the block leaves
     * pub_seq odd, and the next claimer's stores make it even again (a lock
     * would stay taken for ever). Two writers can only overlap when a former
     * owner, paused between its check below and its stores, resumes during
     * the current owner's publication: the block may then be mixed for that
     * claim, which display tolerates and ownership never reads. */
    uint32_t ps = __atomic_load_n(&e->pub_seq, __ATOMIC_RELAXED);
    if (!state_is(e, s.w, s.c))
        return;
    __atomic_store_n(&e->pub_seq, ps | 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    SHMLEASE_FAULT("publish.mid");
    __atomic_store_n(&e->pub_token, token, __ATOMIC_RELAXED);
    uint16_t old_len = __atomic_load_n(&e->meta_len, __ATOMIC_RELAXED);
    if (len || old_len) {
        __atomic_store_n(&e->meta_len, (uint16_t)len, __ATOMIC_RELAXED);
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
    __atomic_store_n(&e->pub_tag, (uint32_t)s.c, __ATOMIC_RELAXED);
    __atomic_store_n(&e->pub_seq, (ps | 1) + 1, __ATOMIC_RELEASE);
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

/* ---- death watch ---------------------------------------------------------- */

/* One registration of a registry slot: the slot and its generation. A slot
 * reused by a new process is another holder, whatever its number. */
struct holder {
    uint32_t slot;
    uint64_t gen;
};

struct deathwatch {
    struct shm_entry *e;
    struct holder h;           /* the registration watched */
    int      running;          /* thread made, not yet joined */
    int      fired;            /* its process ended (atomic) */
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
        return dw->running && !__atomic_load_n(&dw->fired, __ATOMIC_SEQ_CST);
    deathwatch_stop(dw);
    dw->e = e;
    dw->h = h;
    dw->fired = 0;
    const struct shm_reg *r = &t->reg[h.slot];
    uint64_t ns = __atomic_load_n(&r->pidns_ino, __ATOMIC_RELAXED);
    int32_t pid = __atomic_load_n(&r->pid, __ATOMIC_RELAXED);
    uint64_t start = __atomic_load_n(&r->start_time, __ATOMIC_RELAXED);
    if (!ns || ns != t->my_pidns || pid <= 0 || !start)
        return 0;
    dw->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (dw->pidfd < 0)
        return 0;                              /* gone already, or no pidfd */
    /* The pidfd pins a process; make sure it is the registered one and not
     * a newcomer that got the same PID (PITFALLS 7). Unreadable (hidden
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
    struct holder h = {w_owner(w), 0};
    if (h.slot && h.slot < REG_SLOTS)
        h.gen = __atomic_load_n(&t->reg[h.slot].gen, __ATOMIC_ACQUIRE);
    return h;
}

/*
 * Sleeps until the entry may have changed: released, deadline reached, the
 * holder's death, or the caller's wait deadline. W is the word that made us
 * wait (HELD by a live holder, or GRACE). Always sleeps unless the state
 * already changed: whatever it cannot learn (no death watch, a watch that
 * fired for a holder the registry lock still says alive), it sleeps in short
 * slices instead of spinning.
 */
static void wait_for_change(shmlease_table *t, struct shm_entry *e, uint64_t w, uint64_t now,
                            uint64_t wait_until, struct deathwatch *dw, int young)
{
    uint64_t cap = IDLE_MS;
    /* A young wait has no watch thread yet; an older one without a watch
     * asks the registry lock at every short sleep. */
    if (w_kind(w) == W_HELD && w_owner(w) != my_slot(t) &&
        (young || !deathwatch_start(dw, t, e, holder_of(t, w))))
        cap = WATCH_MS;
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
    if (__atomic_load_n(&e->state, __ATOMIC_SEQ_CST) == w) {
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
    }
    waiter_leave(e, gen);
    if (rec)
        __atomic_store_n(rec, 0, __ATOMIC_RELAXED);
}

/* ---- acquire -------------------------------------------------------------- */

/* One acquire call: what it was asked, and what it learnt so far. */
struct acquire {
    shmlease_table *t;
    const shmlease_acquire_opts *o;
    struct keybuf kb;
    uint64_t rw;               /* our registration */
    uint32_t me;               /* our registry slot */
    uint64_t wait_until;       /* table time at which the wait gives up, 0: not computed */
    uint64_t wait_start;       /* table time of the first sleep */
    unsigned sleeps;
    int      counted_contended, counted_wait;
    struct deathwatch dw;
};

/* Where an acquire stands on one entry. */
struct target {
    long     ei;               /* entry */
    uint32_t kseq;             /* key_seq under which it holds our key */
    struct lstate s;           /* the state we claimed (valid once claimed) */
};

enum step { STEP_CLAIMED = 1, STEP_FOUND, STEP_AGAIN, STEP_RELOOKUP };

/* How long an acquire may wait for a structural lock: a try allows
 * STRUCT_TRY_MS for a stopped lock holder, a timed wait what is left of it. */
static uint64_t struct_lock_ms(struct acquire *a, uint64_t now)
{
    if (a->o->wait_ms == 0)
        return STRUCT_TRY_MS;
    if (a->o->wait_ms == SHMLEASE_WAIT_FOREVER)
        return UINT64_MAX;
    if (!a->wait_until)
        a->wait_until = wait_deadline(a->o, now);
    return a->wait_until > now ? a->wait_until - now : 0;
}

/* A structural lock that stayed taken: a try reports the key busy. */
static int struct_lock_gave_up(struct acquire *a, int rc)
{
    if (rc != -ETIMEDOUT)
        return rc;
    if (a->o->wait_ms == 0) {
        STAT_ADD(a->t, cold, busy);
        return -EBUSY;
    }
    STAT_ADD(a->t, cold, timeouts);
    return -ETIMEDOUT;
}

static int acquire_begin(struct acquire *a, shmlease_table *t, const char *key,
                         const shmlease_acquire_opts *o, const shmlease_lease *out)
{
    if (!t || !o || !out)
        return -EINVAL;
    int rc = shmlease__key_prepare(t, key, &a->kb);
    if (rc)
        return rc;
    if (o->ttl_ms == 0 || o->wait_ms < SHMLEASE_WAIT_FOREVER)
        return -EINVAL;
    if (o->metadata_len > SHMLEASE_METADATA_MAX || (o->metadata_len && !o->metadata))
        return -EINVAL;
    if (!SHMLEASE_RESERVED_ZERO(o))
        return -EINVAL;              /* asks for what this version does not know */
    if (t->readonly)
        return -EPERM;
    a->t = t;
    a->o = o;
    /* Not yet registered in this process (a fork child): register, waiting
     * for the registry lock as long as the call may wait. */
    if (unlikely(my_slot(t) == 0)) {
        rc = shmlease__ensure_registered(t, struct_lock_ms(a, shmlease__now_rel(t)));
        if (rc)
            return struct_lock_gave_up(a, rc);
    }
    a->rw = reg_load(t);
    a->me = reg_slot(a->rw);
    return a->me ? 0 : -ESTALE;   /* 0 cannot happen: just registered */
}

/* The key is not in the index (as far as a lock-free look can tell): under
 * index_mutex, find it or insert it already claimed by us. */
static int insert_or_find(struct acquire *a, struct target *tg)
{
    struct shmlease__insert ins = {.kb = &a->kb, .owner = a->me, .ttl_ms = a->o->ttl_ms,
                                   .lock_ms = struct_lock_ms(a, shmlease__now_rel(a->t))};
    int rc = shmlease__insert_held(a->t, &ins);
    if (rc == -EAGAIN)
        return STEP_AGAIN;
    if (rc < 0)
        return struct_lock_gave_up(a, rc);
    tg->ei = ins.entry;
    tg->kseq = ins.key_seq;
    tg->s = ins.state;
    return rc == 1 ? STEP_CLAIMED : STEP_FOUND;
}

/* May the acquire take word W now? Counts why in the statistics when the
 * CAS then succeeds (see claim_entry). 0: no; else TAKE_*. */
enum { TAKE_FREE = 1, TAKE_EXPIRED, TAKE_GRACE_OVER, TAKE_DEAD };

static int takeable(struct acquire *a, uint64_t w, uint64_t now)
{
    uint64_t k = w_kind(w);
    if (k == W_FREE)
        return TAKE_FREE;
    if (w_deadline(w) <= now)
        return k == W_HELD ? TAKE_EXPIRED : TAKE_GRACE_OVER;
    /* Ask the kernel (the registry lock is the only proof of death), except
     * before the first (short) sleep of a waiting acquire: most waits end
     * with a release, and the syscall would only slow the hand-off. */
    if (k == W_HELD && w_owner(w) != a->me && (a->o->wait_ms == 0 || a->sleeps > 0) &&
        shmlease__alive(a->t, w_owner(w)) == 0)
        return TAKE_DEAD;
    return 0;
}

/* The key is held by someone else (or by us: leases are not re-entrant).
 * 0 after a sleep, or the code that ends the acquire. */
static int wait_or_give_up(struct acquire *a, struct shm_entry *e, uint64_t w, uint64_t now)
{
    shmlease_table *t = a->t;
    if (!a->counted_contended) {
        a->counted_contended = 1;
        STAT_ADD(t, cold, contended);
    }
    if (a->o->wait_ms == 0) {
        STAT_ADD(t, cold, busy);
        return -EBUSY;
    }
    if (!a->wait_until)
        a->wait_until = wait_deadline(a->o, now);
    if (now >= a->wait_until) {
        STAT_ADD(t, cold, timeouts);
        shmlease__wake_waiters(e, 0);   /* pass on a wake-up we may have consumed */
        return -ETIMEDOUT;
    }
    if (!a->counted_wait) {
        a->counted_wait = 1;
        STAT_ADD(t, cold, waits);
    }
    if (a->sleeps == 0)
        a->wait_start = now;
    wait_for_change(t, e, w, now, a->wait_until, &a->dw, now - a->wait_start < WATCH_AFTER_MS);
    a->sleeps++;
    return 0;
}

/* Takes the entry when it is free, expired or its holder is dead, else waits
 * as the options say. STEP_CLAIMED with tg->s, STEP_RELOOKUP when the entry
 * no longer holds our key, or the code that ends the acquire. */
static int claim_entry(struct acquire *a, struct target *tg)
{
    shmlease_table *t = a->t;
    struct shm_entry *e = &t->entries[tg->ei];
    for (;;) {
        struct lstate s = state_load(e);
        /* The state belongs to our key only if the key did not change. */
        if (w_kind(s.w) == W_RETIRED || __atomic_load_n(&e->key_seq, __ATOMIC_ACQUIRE) != tg->kseq)
            return STEP_RELOOKUP;
        uint64_t now = shmlease__now_rel(t);
        int why = takeable(a, s.w, now);
        if (why) {
            /* The deadline of a new claim comes from a clock read just before
             * its CAS, never before a wait: stop watching a holder first
             * (joining the watch thread can take a while on a busy machine). */
            if (a->dw.running) {
                deathwatch_stop(&a->dw);
                continue;
            }
            struct lstate n = {w_make_held(a->me, w_deadline_after(now, a->o->ttl_ms)), s.c + 1};
            if (!state_cas(e, s, n))
                continue;
            if (why == TAKE_EXPIRED)
                STAT_ADD(t, cold, expirations);
            else if (why == TAKE_DEAD)
                STAT_ADD(t, cold, reclaimed_dead);
            tg->s = n;
            return STEP_CLAIMED;
        }
        int rc = wait_or_give_up(a, e, s.w, now);
        if (rc)
            return rc;
    }
}

/* Draws the fencing token of a claim and fills the lease. 0, or -EAGAIN when
 * the claim was lost before its token was drawn (start over). */
static int finish_claim(struct acquire *a, const struct target *tg, shmlease_lease *out)
{
    shmlease_table *t = a->t;
    struct shm_entry *e = &t->entries[tg->ei];
    /* Whatever path claimed (an insert after a wait, too), the watch thread
     * is joined before the deadline is checked for the last time. */
    deathwatch_stop(&a->dw);
    SHMLEASE_FAULT("acquire.after_cas");
    uint64_t token = acquire_token(t);
    SHMLEASE_FAULT("acquire.after_token");
    /* Still ours after the token was drawn? Then anyone who takes the key
     * later does so after this point and draws a greater token. If not, we
     * lost it in between: this token is wasted, start over. */
    if (!state_is(e, tg->s.w, tg->s.c)) {
        STAT_ADD(t, cold, other_tokens);
        return -EAGAIN;
    }
    publish(e, tg->s, token, a->o->metadata, a->o->metadata_len);
    /* A lease valid for about ttl_ms from our return: if this thread was
     * held up since the claim (a page fault behind another thread's fork, a
     * publication block held by a paused writer), move the deadline to now
     * + ttl by the same CAS a renew makes; failing it, the claim was lost
     * meanwhile and we start over. */
    struct lstate s = tg->s;
    uint64_t fresh = w_deadline_after(shmlease__now_rel(t), a->o->ttl_ms);
    if (fresh > w_deadline(s.w) + FRESH_SLACK_MS) {
        struct lstate n = {w_make_held(a->me, fresh), s.c};
        if (!state_cas(e, s, n)) {
            STAT_ADD(t, cold, other_tokens);
            return -EAGAIN;
        }
        s = n;
    }
    memset(out, 0, sizeof *out);
    out->fencing_token = token;
    out->expires_at_ms = t->created_at + w_deadline(s.w);
    L_ENTRY(out) = (uint64_t)tg->ei;
    L_WORD(out) = s.w;
    L_CLAIM(out) = s.c;
    L_REG(out) = a->rw;
    L_EPOCH(out) = t->epoch;
    return 0;
}

static int acquire_run(struct acquire *a, shmlease_lease *out)
{
    int locked_lookup = 0;
    for (;;) {
        struct target tg = {0};
        int rc = STEP_FOUND;
        /* After finding a retired entry, look up under index_mutex: the
         * retirer may have died before unlinking it, and the lock's recovery
         * is what rebuilds the index. */
        tg.ei = locked_lookup ? -1 : shmlease__lookup(a->t, &a->kb, &tg.kseq);
        locked_lookup = 0;
        if (tg.ei < 0)
            rc = insert_or_find(a, &tg);
        if (rc == STEP_FOUND)
            rc = claim_entry(a, &tg);
        if (rc == STEP_RELOOKUP)
            locked_lookup = 1;
        if (rc == STEP_CLAIMED && (rc = finish_claim(a, &tg, out)) == 0)
            return 0;
        if (rc < 0 && rc != -EAGAIN)
            return rc;
    }
}

SHM_API int shmlease_acquire(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                             shmlease_lease *out)
{
    struct acquire a;
    memset(&a, 0, sizeof a);
    a.dw.pidfd = a.dw.stopfd = -1;
    int rc = acquire_begin(&a, t, key, o, out);
    if (rc == 0)
        rc = acquire_run(&a, out);
    deathwatch_stop(&a.dw);
    return rc;
}

/* ---- renew, release, check, break ------------------------------------------ */

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
     * this process's any more; one spent by release names owner 0. */
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

static inline struct lstate lease_state(const shmlease_lease *l)
{
    return (struct lstate){L_WORD(l), L_CLAIM(l)};
}

/* The lease value is spent (released): later calls on it are -ESTALE. */
static inline void lease_spend(shmlease_lease *l)
{
    L_WORD(l) = w_make_held(0, 0);
}

/* After a CAS from the lease's state: did it happen before the lease's
 * deadline? The clock is read after the CAS, so "not passed now" proves it;
 * "passed now" cannot tell whether the CAS came first, and the call then
 * treats the lease as lost (a lease reported lost, by check or inspect, at
 * its deadline stays lost: no call on it succeeds after that instant). */
static int cas_was_in_time(shmlease_table *t, uint64_t deadline)
{
    return shmlease__now_rel(t) < deadline;
}

/* Undoes a transition of a lease that turned out to straddle its deadline:
 * from N (our CAS's result) to FREE, so the key is what the expiry made it. */
static void give_up(struct shm_entry *e, struct lstate n)
{
    if (state_cas(e, n, (struct lstate){W_FREE_WORD, n.c}))
        shmlease__wake_waiters(e, 1);
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
    struct lstate old = lease_state(l);
    uint64_t now = shmlease__now_rel(t);
    if (w_deadline(old.w) <= now)
        return lost(t);
    struct lstate n = {w_make_held(w_owner(old.w), w_deadline_after(now, ttl_ms)), old.c};
    SHMLEASE_FAULT("renew.before_cas");
    if (!state_cas(e, old, n))
        return lost(t);
    SHMLEASE_FAULT("renew.after_cas");
    if (!cas_was_in_time(t, w_deadline(old.w))) {
        give_up(e, n);
        lease_spend(l);
        return lost(t);
    }
    /* A shorter deadline may concern waiters sleeping until the old one. */
    if (w_deadline(n.w) < w_deadline(old.w))
        shmlease__wake_waiters(e, 1);
    L_WORD(l) = n.w;
    l->expires_at_ms = t->created_at + w_deadline(n.w);
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
    struct lstate old = lease_state(l);
    uint64_t now = shmlease__now_rel(t);
    if (w_deadline(old.w) <= now)
        return lost(t);
    struct lstate n = {grace_ms ? w_make_grace(w_deadline_after(now, grace_ms)) : W_FREE_WORD, old.c};
    SHMLEASE_FAULT("release.before_cas");
    if (!state_cas(e, old, n))
        return lost(t);
    SHMLEASE_FAULT("release.after_cas");
    lease_spend(l);
    if (!cas_was_in_time(t, w_deadline(old.w))) {
        /* Freed after the deadline: what expiry had made of it anyway. A
         * grace period begun after the deadline is undone. */
        if (grace_ms)
            give_up(e, n);
        else
            shmlease__wake_waiters(e, 0);
        return lost(t);
    }
    /* A grace period changes the deadline waiters sleep towards: wake all. */
    shmlease__wake_waiters(e, grace_ms != 0);
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
    if (!state_is(&t->entries[ei], L_WORD(l), L_CLAIM(l)))
        return lost(t);
    if (w_deadline(L_WORD(l)) <= shmlease__now_rel(t))
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
        struct lstate s = state_load(e);
        if (__atomic_load_n(&e->key_seq, __ATOMIC_ACQUIRE) != kseq)
            continue;                  /* entry reused for another key meanwhile */
        if (!w_live(s.w, shmlease__now_rel(t)))
            return -ENOENT;
        if (state_cas(e, s, (struct lstate){W_FREE_WORD, s.c}))
            break;
    }
    shmlease__wake_waiters(e, 1);
    STAT_ADD(t, cold, broken);
    return 0;
}
