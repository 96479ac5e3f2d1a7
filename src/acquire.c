/*
 * Acquiring a lease: one call split into named steps (acquire_begin,
 * insert_or_find, claim_entry with takeable and wait_or_give_up,
 * finish_claim), driven by acquire_run. The state transitions are those of
 * lease.h; waiting is wait.c's; the key index is index.c's.
 *
 * Fencing tokens: drawn from the table's counter (one atomic add) AFTER the
 * claiming CAS, then we check that the state is still ours. So a token is
 * always drawn while its claim is current: anyone who later takes the key
 * over (after expiry, death or break) draws a later, greater token. Tokens
 * are greater than all tokens drawn before, for any key, for the life of the
 * segment (docs/state-machine.md, "Fencing tokens").
 */
#include "lease.h"
#include "abi.h"
#include "cancel.h"
#include "clock.h"
#include "compiler.h"
#include "fault.h"
#include "index.h"
#include "key.h"
#include "liveness.h"
#include "registry.h"
#include "wait.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define STRUCT_TRY_MS 100u     /* a try waits this long for a structural lock
                                  whose holder is stopped, then -EBUSY */
#define FRESH_SLACK_MS  1u     /* an acquire returns at most this much (or the cheap
                                  clock's lag, if larger: clock.h) less than its ttl,
                                  as of its last clock read */

#define KNOWN_ACQUIRE_FLAGS 0u  /* opts.flags this version knows */

#define SHORT_TTL_LAGS  4u     /* a TTL up to this many cheap-clock lags gets its
                                  deadline from the precise clock */

/* How much shorter than TTL_MS, from the acquire's last clock read, the
 * lease it returns may be: the cheap clock's lag (at least FRESH_SLACK_MS),
 * but never so much that the lease is already over when returned: at most
 * TTL_MS - 1, so that the deadline is after that read. */
static inline uint64_t fresh_slack(const shmlease_table *t, uint64_t ttl_ms)
{
    uint64_t s = shmlease__cheap_lag_ms(t);
    if (s < FRESH_SLACK_MS)
        s = FRESH_SLACK_MS;
    return s < ttl_ms ? s : ttl_ms - 1;
}

/* Draws the next fencing token. At least acq_rel for the claim argument;
 * seq_cst places the draw in one total order with the state CASes, in which
 * "greater than every token returned before this acquire was called" reads
 * directly (docs/memory-ordering.md MO-4); on x86-64 it is the same lock xadd. */
static inline uint64_t acquire_token(shmlease_table *t)
{
    return add_seqcst(&t->hdr->hot.fence, 1);
}


/* When an acquire with options O, first waiting at table time NOW, gives up. */
static inline uint64_t wait_deadline(const shmlease_acquire_opts *o, uint64_t now)
{
    return o->wait_ms == SHMLEASE_WAIT_FOREVER ? UINT64_MAX : sw_deadline_after(now, (uint64_t)o->wait_ms);
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
    uint32_t ps = ld_relaxed(&e->pub_seq);
    if (!ls_is(e, s.w, s.c))
        return;
    st_relaxed(&e->pub_seq, ps | 1);
    fence_release();
    SHMLEASE_FAULT("publish.mid");
    st_relaxed(&e->pub_token, token);
    uint16_t old_len = ld_relaxed(&e->meta_len);
    if (len || old_len) {
        st_relaxed(&e->meta_len, (uint16_t)len);
        size_t full = len / 8, i;
        for (i = 0; i < full; i++) {
            uint64_t v;
            memcpy(&v, (const uint8_t *)meta + 8 * i, 8);
            st_relaxed((uint64_t *)(void *)(e->meta + 8 * i), v);
        }
        if (len % 8) {
            uint64_t v = 0;
            memcpy(&v, (const uint8_t *)meta + 8 * i, len % 8);
            st_relaxed((uint64_t *)(void *)(e->meta + 8 * i), v);
        }
    }
    st_relaxed(&e->pub_tag, (uint32_t)s.c);
    st_release(&e->pub_seq, (ps | 1) + 1);
}

/* ---- acquire -------------------------------------------------------------- */

/* One acquire call: what it was asked, and what it learnt so far. */
struct acquire {
    shmlease_table *t;
    const shmlease_acquire_opts *o;
    uint64_t rw;               /* our registration */
    uint32_t me;               /* our registry slot */
    uint64_t wait_until;       /* table time at which the wait gives up, 0: not computed */
    unsigned sleeps;
    int      ask;              /* ask the registry lock at the next look (wait.h) */
    int      counted_contended, counted_wait;
    struct deathwatch dw;
    struct keybuf kb;          /* last: acquire zeroes what precedes it */
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
        stats_inc(a->t, cold.busy);
        return -EBUSY;
    }
    stats_inc(a->t, cold.timeouts);
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
    if (!SHMLEASE_RESERVED_ZERO(o) || !shmlease__all_zero(o->reserved_1, sizeof o->reserved_1))
        return -EINVAL;              /* asks for what this version does not know */
    if (o->mode > SHMLEASE_SHARED || o->limit > SHMLEASE_LIMIT_MAX ||
        (o->mode == SHMLEASE_EXCLUSIVE && o->limit) || (o->flags & ~KNOWN_ACQUIRE_FLAGS))
        return -EINVAL;
    if (shmlease__cancel_fired(o->cancel))
        return -ECANCELED;
    if (t->readonly)
        return -EPERM;
    a->t = t;
    a->o = o;
    /* Not yet registered in this process (a fork child): register, waiting
     * for the registry lock as long as the call may wait. */
    if (unlikely(handle_slot(t) == 0)) {
        rc = shmlease__ensure_registered(t, struct_lock_ms(a, shmlease__now_rel(t)));
        if (rc)
            return struct_lock_gave_up(a, rc);
    }
    a->rw = handle_regword(t);
    a->me = regword_slot(a->rw);
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
    return ins.inserted ? STEP_CLAIMED : STEP_FOUND;
}

/* May the acquire take word W now? Counts why in the statistics when the
 * CAS then succeeds (see claim_entry). 0: no; else TAKE_*. */
enum { TAKE_FREE = 1, TAKE_EXPIRED, TAKE_GRACE_OVER, TAKE_DEAD };

/* Has deadline D passed? NOW may be a cheap read (clock.h): reaching D
 * proves it; short of D by more than the cheap clock's ordinary lag, it has
 * not (a longer lag, on a stalled machine, only makes the key look held a
 * little longer); closer than that, the precise clock decides. */
static int deadline_passed(const shmlease_table *t, uint64_t d, uint64_t now)
{
    if (d <= now)
        return 1;
    if (d - now > shmlease__cheap_lag_ms(t))
        return 0;
    return d <= shmlease__now_rel(t);
}

static int takeable(struct acquire *a, uint64_t w, uint64_t now)
{
    uint64_t k = sw_kind(w);
    if (k == SW_FREE)
        return TAKE_FREE;
    if (deadline_passed(a->t, sw_deadline(w), now))
        return k == SW_HELD ? TAKE_EXPIRED : TAKE_GRACE_OVER;
    /* Ask the kernel (the registry lock is the only proof of death) for a
     * try, and for a waiting acquire when its last sleep says so (wait.h:
     * the holder is not watched, the death watcher saw a process end, the
     * sleep timed out, or the holder was found dead before sleeping). Not
     * after a release woke us: the syscall would only slow the hand-off. A
     * try believes an "alive" answer given less than VERDICT_MS ago
     * (liveness.h); a waiter never does. */
    if (k == SW_HELD && sw_owner(w) != a->me && (a->o->wait_ms == 0 || a->ask) &&
        (a->o->wait_ms == 0 ? shmlease__alive_try(a->t, sw_owner(w))
                            : shmlease__alive(a->t, sw_owner(w))) == 0)
        return TAKE_DEAD;
    return 0;
}

/* The key is held by someone else (or by us: leases are not re-entrant).
 * 0 after a sleep, or the code that ends the acquire. */
static int wait_or_give_up(struct acquire *a, struct shm_entry *e, uint64_t w, uint64_t now)
{
    shmlease_table *t = a->t;
    if (a->o->wait_ms == 0) {
        /* One atomic add on a refused try: `refused` counts as both
         * contended and busy (stats_get). */
        stats_inc(t, cold.refused);
        return -EBUSY;
    }
    if (!a->counted_contended) {
        a->counted_contended = 1;
        stats_inc(t, cold.contended);
    }
    if (!a->wait_until)
        a->wait_until = wait_deadline(a->o, now);
    if (now >= a->wait_until) {
        stats_inc(t, cold.timeouts);
        shmlease__wake_waiters(e, 0);   /* pass on a wake-up we may have consumed */
        return -ETIMEDOUT;
    }
    if (!a->counted_wait) {
        a->counted_wait = 1;
        stats_inc(t, cold.waits);
    }
    a->ask = shmlease__wait_for_change(t, e, w, now, a->wait_until, &a->dw, shmlease__alive, a->o->cancel);
    a->sleeps++;
    if (shmlease__cancel_fired(a->o->cancel)) {
        shmlease__wake_waiters(e, 0);   /* pass on a wake-up we may have consumed */
        return -ECANCELED;
    }
    return 0;
}

/* wait_or_give_up, sleeping on E (state W) but watching WATCH's holder and
 * deadline: a shared acquire that found every slot taken. */
static int wait_or_give_up_of(struct acquire *a, struct shm_entry *e, uint64_t w, uint64_t watch,
                              uint64_t now)
{
    shmlease_table *t = a->t;
    if (!a->counted_contended) {
        a->counted_contended = 1;
        stats_inc(t, cold.contended);
    }
    if (!a->wait_until)
        a->wait_until = wait_deadline(a->o, now);
    if (now >= a->wait_until) {
        stats_inc(t, cold.timeouts);
        shmlease__wake_waiters(e, 0);
        return -ETIMEDOUT;
    }
    if (!a->counted_wait) {
        a->counted_wait = 1;
        stats_inc(t, cold.waits);
    }
    shmlease__wait_for_change_of(t, e, w, watch, now, a->wait_until, &a->dw, shmlease__alive, a->o->cancel);
    a->ask = 1;                        /* slots are looked at again: ask about their holders */
    a->sleeps++;
    if (shmlease__cancel_fired(a->o->cancel)) {
        shmlease__wake_waiters(e, 0);
        return -ECANCELED;
    }
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
        struct lstate s = ls_load(e);
        /* The state belongs to our key only if the key did not change. */
        if (sw_kind(s.w) == SW_RETIRED || ld_acquire(&e->key_seq) != tg->kseq)
            return STEP_RELOOKUP;
        /* A new deadline may come from the cheap clock (never later than
         * asked; finish_claim bounds how much earlier). A wait sleeps and
         * times out on the precise one. */
        uint64_t now = shmlease__cheap_rel(t);
        if ((sw_kind(s.w) != SW_FREE && a->o->wait_ms != 0) ||
            a->o->ttl_ms <= SHORT_TTL_LAGS * (uint64_t)shmlease__cheap_lag_ms(t))
            now = shmlease__now_rel(t);   /* a wait, or a TTL the cheap clock's lag would eat */
        int why = takeable(a, s.w, now);
        if (why) {
            /* The deadline of a new claim comes from a clock read just before
             * its CAS, never before a wait: leave the death watcher first
             * (it takes a mutex, which can take a while on a busy machine). */
            if (a->dw.running) {
                shmlease__deathwatch_stop(&a->dw);
                continue;
            }
            struct lstate n = {sw_held_aux(a->me, sw_deadline_after(now, a->o->ttl_ms), sw_aux(s.w)), s.c + 1};
            if (!ls_cas(e, s, n))
                continue;
            if (why == TAKE_EXPIRED)
                stats_inc(t, cold.expirations);
            else if (why == TAKE_DEAD)
                stats_inc(t, cold.reclaimed_dead);
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
    if (unlikely(!ld_relaxed(&t->claimed)))
        st_relaxed(&t->claimed, 1);      /* close must look for our leases */
    /* Whatever path claimed (an insert after a wait, too), the death watcher
     * is left before the deadline is checked for the last time. */
    shmlease__deathwatch_stop(&a->dw);
    SHMLEASE_FAULT("acquire.after_cas");
    uint64_t token = acquire_token(t);
    SHMLEASE_FAULT("acquire.after_token");
    /* Still ours after the token was drawn? Then anyone who takes the key
     * later does so after this point and draws a greater token. If not, we
     * lost it in between: this token is wasted, start over. */
    if (!ls_is(e, tg->s.w, tg->s.c)) {
        stats_inc(t, cold.other_tokens);
        return -EAGAIN;
    }
    publish(e, tg->s, token, a->o->metadata, a->o->metadata_len);
    /* A lease valid for about ttl_ms from our return: if this thread was
     * held up since the claim (a page fault behind another thread's fork, a
     * publication block held by a paused writer), or its deadline came from
     * a cheap clock lagging more than usual, move the deadline to now
     * + ttl by the same CAS a renew makes; failing it, the claim was lost
     * meanwhile and we start over. This precise read is the acquire's last. */
    struct lstate s = tg->s;
    uint64_t fresh = sw_deadline_after(shmlease__now_rel(t), a->o->ttl_ms);
    if (fresh > sw_deadline(s.w) + fresh_slack(t, a->o->ttl_ms)) {
        struct lstate n = {sw_held_aux(a->me, fresh, sw_aux(s.w)), s.c};
        if (!ls_cas(e, s, n)) {
            stats_inc(t, cold.other_tokens);
            return -EAGAIN;
        }
        s = n;
    }
    memset(out, 0, sizeof *out);
    out->fencing_token = token;
    out->expires_at_ms = t->created_at + sw_deadline(s.w);
    L_ENTRY(out) = (uint64_t)tg->ei;
    L_WORD(out) = s.w;
    L_CLAIM(out) = s.c;
    L_REG(out) = a->rw;
    L_EPOCH(out) = t->epoch;
    return 0;
}

/* ---- shared leases ------------------------------------------------------- */
/*
 * A key used in SHARED mode has its own entry, the gate, and one entry per
 * shared holder, its slots (key.h). The gate's aux field counts the slots
 * ever used while it lives (hw); a slot's aux is its holder's limit.
 *
 * Exclusion is a store-then-load pair on each side (docs/memory-ordering.md
 * MO-12): an exclusive acquirer claims the gate (CAS), then looks at every
 * slot; a shared acquirer claims a slot (CAS, or an insert whose bucket it
 * published), then looks at the gate. Each side has a sequentially
 * consistent fence between its store and its loads, so at least one sees
 * the other: the shared one backs off (gives the slot back and waits), the
 * exclusive one waits for the slot's holder to leave. While it waits, the
 * exclusive acquirer holds the gate: new shared acquirers find it held and
 * wait behind it (writer preference). It renews the gate at each look, and
 * looks again after its last renew, so a gate that expired while its
 * acquirer was stopped (letting shared holders in) is drained again.
 */

/* Gives back a gate we claimed but cannot keep (a try, a timeout, a cancel,
 * an upgrade that failed): FREE, aux kept, and its waiters woken. */
static void gate_give_back(struct shm_entry *e, struct lstate s)
{
    if (ls_cas(e, s, (struct lstate){sw_free_aux(sw_aux(s.w)), s.c}))
        shmlease__wake_waiters(e, 1);
}

/* Is slot state S live: held or in grace, before its deadline, its holder
 * not known dead? (A holder whose liveness we may not ask counts as live:
 * the waits that follow ask.) */
static int slot_live(struct acquire *a, uint64_t w, uint64_t now)
{
    uint64_t k = sw_kind(w);
    if (k != SW_HELD && k != SW_GRACE)
        return 0;
    return !takeable(a, w, now);
}

/* The first live slot among 0..HW-1 other than entry SKIP (-1: none), seen
 * after a sequentially consistent fence (MO-12). Returns its entry and
 * *W its word, or -1. */
static long live_slot(struct acquire *a, uint32_t hw, long skip, uint64_t *w)
{
    shmlease_table *t = a->t;
    fence_seqcst();
    uint64_t now = shmlease__now_rel(t);
    for (uint32_t i = 0; i < hw; i++) {
        struct keybuf skb;
        shmlease__slot_key(&a->kb, i, &skb);
        uint32_t kseq;
        long ei = shmlease__lookup_stable(t, &skb, &kseq);
        if (ei < 0 || ei == skip)
            continue;
        uint64_t sw = ld_seqcst(&t->entries[ei].state);
        if (ld_acquire(&t->entries[ei].key_seq) != kseq)
            continue;                  /* retired and reused: not our slot any more */
        if (slot_live(a, sw, now)) {
            *w = sw;
            return ei;
        }
    }
    return -1;
}

/* After claiming the gate (TG->s) of a key whose gate counts slots: waits
 * until no slot but SKIP is live, renewing the gate at each look.
 * STEP_CLAIMED (TG->s the renewed gate), -EAGAIN (the gate was lost: start
 * over), or the code that ends the acquire, after giving the gate back. */
static int drain_slots(struct acquire *a, struct target *tg, struct target *keep)
{
    shmlease_table *t = a->t;
    struct shm_entry *e = &t->entries[tg->ei];
    long skip = keep ? keep->ei : -1;
    for (;;) {
        uint64_t now = shmlease__now_rel(t);
        struct lstate n = {sw_held_aux(a->me, sw_deadline_after(now, a->o->ttl_ms), sw_aux(tg->s.w)), tg->s.c};
        if (!ls_cas(e, tg->s, n))
            return -EAGAIN;
        tg->s = n;
        /* An upgrader keeps its shared lease while it waits. */
        if (keep) {
            struct shm_entry *ke = &t->entries[keep->ei];
            struct lstate kn = {sw_held_aux(a->me, sw_deadline_after(now, a->o->ttl_ms), sw_aux(keep->s.w)),
                                keep->s.c};
            if (sw_deadline(keep->s.w) <= now || !ls_cas(ke, keep->s, kn)) {
                gate_give_back(e, tg->s);
                return -ESTALE;
            }
            keep->s = kn;
        }
        uint64_t sw;
        long si = live_slot(a, sw_aux(n.w), skip, &sw);
        if (si < 0)
            return STEP_CLAIMED;
        int rc = wait_or_give_up(a, &t->entries[si], sw, shmlease__now_rel(t));
        if (rc) {
            gate_give_back(e, tg->s);
            return rc;
        }
    }
}

/* Shared acquires: what they learnt of the key's gate. */
struct gate {
    long ei;
    uint32_t kseq;
    struct lstate s;
};

/* Finds the key's gate, inserting it FREE if missing (LOCKED: look up
 * under the index lock). STEP_FOUND, STEP_AGAIN, or a code. */
static int gate_find(struct acquire *a, struct gate *g, int locked)
{
    g->ei = locked ? -1 : shmlease__lookup(a->t, &a->kb, &g->kseq);
    if (g->ei >= 0)
        return STEP_FOUND;
    struct shmlease__insert ins = {.kb = &a->kb, .owner = a->me, .ttl_ms = a->o->ttl_ms,
                                   .lock_ms = struct_lock_ms(a, shmlease__now_rel(a->t)), .free_gate = 1};
    int rc = shmlease__insert_held(a->t, &ins);
    if (rc == -EAGAIN)
        return STEP_AGAIN;
    if (rc < 0)
        return struct_lock_gave_up(a, rc);
    g->ei = ins.entry;
    g->kseq = ins.key_seq;
    return STEP_FOUND;
}

enum { SLOT_FULL = 10 };

/* Tries to claim slot I (limit LIM) of the key: STEP_CLAIMED with SL,
 * 0 if the slot is live (*LIVE its word), STEP_AGAIN to look again, or a
 * code (-EDOM: held with another limit). */
static int slot_try(struct acquire *a, uint32_t i, uint32_t lim, struct target *sl, uint64_t *live)
{
    shmlease_table *t = a->t;
    struct keybuf skb;
    shmlease__slot_key(&a->kb, i, &skb);
    sl->ei = shmlease__lookup(t, &skb, &sl->kseq);
    if (sl->ei < 0) {
        struct shmlease__insert ins = {.kb = &skb, .owner = a->me, .ttl_ms = a->o->ttl_ms,
                                       .lock_ms = struct_lock_ms(a, shmlease__now_rel(t)), .aux = lim};
        int rc = shmlease__insert_held(t, &ins);
        if (rc == -EAGAIN)
            return STEP_AGAIN;
        if (rc < 0)
            return struct_lock_gave_up(a, rc);
        sl->ei = ins.entry;
        sl->kseq = ins.key_seq;
        if (ins.inserted) {
            sl->s = ins.state;
            return STEP_CLAIMED;
        }
    }
    struct shm_entry *e = &t->entries[sl->ei];
    for (int tries = 0; tries < 4; tries++) {
        struct lstate s = ls_load(e);
        if (sw_kind(s.w) == SW_RETIRED || ld_acquire(&e->key_seq) != sl->kseq)
            return STEP_AGAIN;
        uint64_t now = shmlease__now_rel(t);
        if (slot_live(a, s.w, now)) {
            if (sw_kind(s.w) == SW_HELD && sw_aux(s.w) != lim)
                return -EDOM;
            *live = s.w;
            return 0;
        }
        int why = takeable(a, s.w, now);
        struct lstate n = {sw_held_aux(a->me, sw_deadline_after(now, a->o->ttl_ms), lim), s.c + 1};
        if (ls_cas(e, s, n)) {
            if (why == TAKE_EXPIRED)
                stats_inc(t, cold.expirations);
            else if (why == TAKE_DEAD)
                stats_inc(t, cold.reclaimed_dead);
            sl->s = n;
            return STEP_CLAIMED;
        }
    }
    return STEP_AGAIN;
}

/* Gives back slot SL, claimed but not kept (the gate closed, or another
 * limit showed up): FREE, and the key's waiters woken. */
static void slot_give_back(shmlease_table *t, const struct target *sl, struct shm_entry *gate)
{
    struct shm_entry *e = &t->entries[sl->ei];
    if (ls_cas(e, sl->s, (struct lstate){SW_FREE_WORD, sl->s.c}))
        shmlease__wake_waiters(e, 1);
    shmlease__wake_waiters(gate, 1);
}

/* A live slot with a limit other than LIM, after our claim (MO-12: two
 * acquirers of different limits each see the other, or one does). */
static int other_limit_present(struct acquire *a, uint32_t hw, long mine, uint32_t lim)
{
    shmlease_table *t = a->t;
    uint64_t now = shmlease__now_rel(t);
    for (uint32_t i = 0; i < hw; i++) {
        struct keybuf skb;
        shmlease__slot_key(&a->kb, i, &skb);
        uint32_t kseq;
        long ei = shmlease__lookup_stable(t, &skb, &kseq);
        if (ei < 0 || ei == mine)
            continue;
        uint64_t w = ld_seqcst(&t->entries[ei].state);
        if (ld_acquire(&t->entries[ei].key_seq) == kseq && sw_kind(w) == SW_HELD && sw_aux(w) != lim &&
            slot_live(a, w, now))
            return 1;
    }
    return 0;
}

static int acquire_shared(struct acquire *a, shmlease_lease *out)
{
    shmlease_table *t = a->t;
    uint32_t lim = a->o->limit ? a->o->limit : SHMLEASE_LIMIT_MAX;
    int locked = 0;
    for (;;) {
        struct gate g = {0};
        int rc = gate_find(a, &g, locked);
        locked = 0;
        if (rc == STEP_AGAIN)
            continue;
        if (rc < 0)
            return rc;
        struct shm_entry *ge = &t->entries[g.ei];
        g.s = ls_load(ge);
        if (sw_kind(g.s.w) == SW_RETIRED || ld_acquire(&ge->key_seq) != g.kseq) {
            locked = 1;
            continue;
        }
        uint64_t now = shmlease__now_rel(t);
        if (!takeable(a, g.s.w, now)) {
            /* Held exclusively, or reserved by an exclusive acquirer. */
            if ((rc = wait_or_give_up(a, ge, g.s.w, now)) != 0)
                return rc;
            continue;
        }
        /* A free slot among the first LIM: an existing one, or the next
         * one, counted in the gate first. */
        uint32_t hw = sw_aux(g.s.w);
        struct target sl = {0};
        uint64_t live = 0, soonest = 0;
        rc = SLOT_FULL;
        for (uint32_t i = 0; i < lim; i++) {
            if (i >= hw) {
                uint64_t nw = sw_with_aux(g.s.w, i + 1);
                if (!ls_cas(ge, g.s, (struct lstate){nw, g.s.c})) {
                    rc = STEP_AGAIN;
                    break;
                }
                g.s.w = nw;
                hw = i + 1;
            }
            rc = slot_try(a, i, lim, &sl, &live);
            if (rc == 0) {
                if (!soonest || sw_deadline(live) < sw_deadline(soonest))
                    soonest = live;
                rc = SLOT_FULL;
                continue;
            }
            break;
        }
        if (rc == STEP_AGAIN)
            continue;
        if (rc == SLOT_FULL) {
            /* Every slot is taken: sleep on the gate (a slot's release
             * wakes it), watching the holder whose deadline comes first. */
            if (a->o->wait_ms == 0) {
                stats_inc(t, cold.refused);
                return -EBUSY;
            }
            if ((rc = wait_or_give_up_of(a, ge, g.s.w, soonest, shmlease__now_rel(t))) != 0)
                return rc;
            continue;
        }
        if (rc < 0)
            return rc;
        /* Claimed a slot: is the gate still open (MO-12)? */
        fence_seqcst();
        uint64_t gw = ld_seqcst(&ge->state);
        if (sw_kind(gw) == SW_RETIRED || ld_acquire(&ge->key_seq) != g.kseq ||
            !takeable(a, gw, shmlease__now_rel(t))) {
            slot_give_back(t, &sl, ge);
            continue;
        }
        if (other_limit_present(a, sw_aux(gw), sl.ei, lim)) {
            slot_give_back(t, &sl, ge);
            return -EDOM;
        }
        rc = finish_claim(a, &sl, out);
        if (rc == -EAGAIN)
            continue;
        if (rc == 0)
            L_GATE(out) = (uint64_t)g.ei + 1;
        return rc;
    }
}

static int acquire_run(struct acquire *a, shmlease_lease *out)
{
    if (a->o->mode == SHMLEASE_SHARED)
        return acquire_shared(a, out);
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
        /* A key with shared-holder slots: wait for them to leave. */
        if (rc == STEP_CLAIMED && sw_aux(tg.s.w) != 0)
            rc = drain_slots(a, &tg, NULL);
        if (rc == STEP_CLAIMED && (rc = finish_claim(a, &tg, out)) == 0)
            return 0;
        if (rc < 0 && rc != -EAGAIN)
            return rc;
    }
}

SHM_API int shmlease_acquire(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                             shmlease_lease *out)
{
    /* Every field but the key buffer, which key_prepare fills (zeroing its
     * 128 bytes on every call costs more than the rest of this). */
    struct acquire a;
    memset(&a, 0, offsetof(struct acquire, kb));
    shmlease__deathwatch_init(&a.dw);
    int rc = acquire_begin(&a, t, key, o, out);
    if (rc == 0)
        rc = acquire_run(&a, out);
    shmlease__deathwatch_stop(&a.dw);
    return rc;
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

SHM_API int shmlease_with_lease(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                                int (*fn)(shmlease_table *t, shmlease_lease *l, void *arg),
                                void *arg, int *fn_result)
{
    if (!fn)
        return -EINVAL;
    shmlease_lease l;
    int rc = shmlease_acquire(t, key, o, &l);
    if (rc)
        return rc;
    int r = fn(t, &l, arg);
    if (fn_result)
        *fn_result = r;
    /* fn may have ended the lease itself (release, release_after): then its
     * end decides; otherwise ours does. Either way 0 means the lease was ours
     * from the acquire to the end. */
    if (sw_owner(L_WORD(&l)) == 0)
        return lease_ended_in_time(&l) ? 0 : -ESTALE;
    return shmlease_release(t, &l);
}


/* ---- upgrade ------------------------------------------------------------- */

SHM_API int shmlease_upgrade(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms, int64_t wait_ms)
{
    if (!t || !l || ttl_ms == 0 || wait_ms < SHMLEASE_WAIT_FOREVER || !L_GATE(l) ||
        L_EPOCH(l) != t->epoch || L_ENTRY(l) >= t->capacity || L_GATE(l) > t->capacity)
        return -EINVAL;
    if (t->readonly)
        return -EPERM;
    int rc = shmlease_check(t, l);
    if (rc)
        return rc;
    /* The key, from our slot (its bytes are the key's; a held entry's key
     * does not change). */
    const struct shm_entry *se = &t->entries[L_ENTRY(l)];
    char key[SHMLEASE_KEY_MAX + 1];
    uint32_t klen = ld_relaxed(&se->key_len);
    if (klen == 0 || klen > SHMLEASE_KEY_MAX)
        return -ESTALE;
    for (uint32_t i = 0; i < klen; i++)
        key[i] = (char)ld_relaxed(&se->key[i]);
    key[klen] = 0;
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = ttl_ms;
    o.wait_ms = wait_ms;
    struct acquire a;
    memset(&a, 0, offsetof(struct acquire, kb));
    shmlease__deathwatch_init(&a.dw);
    rc = acquire_begin(&a, t, key, &o, l);
    for (; rc == 0;) {
        struct target tg = {0};
        tg.ei = shmlease__lookup_stable(t, &a.kb, &tg.kseq);
        if (tg.ei != (long)L_GATE(l) - 1) {
            rc = -ESTALE;              /* the key's gate is not the one we came in by */
            break;
        }
        struct shm_entry *ge = &t->entries[tg.ei];
        struct lstate s = ls_load(ge);
        if (sw_kind(s.w) == SW_RETIRED || ld_acquire(&ge->key_seq) != tg.kseq) {
            rc = -ESTALE;
            break;
        }
        uint64_t now = shmlease__now_rel(t);
        /* Held by a live exclusive acquirer: it waits for our slot, which we
         * would keep while waiting for it. */
        a.ask = 1;
        if (!takeable(&a, s.w, now)) {
            rc = -EDEADLK;
            break;
        }
        struct lstate n = {sw_held_aux(a.me, sw_deadline_after(now, ttl_ms), sw_aux(s.w)), s.c + 1};
        if (!ls_cas(ge, s, n))
            continue;
        tg.s = n;
        struct target keep = {.ei = (long)L_ENTRY(l)};
        keep.s = ls_snapshot(&t->entries[keep.ei]);
        if (keep.s.c != L_CLAIM(l) || sw_kind(keep.s.w) != SW_HELD || sw_owner(keep.s.w) != a.me) {
            gate_give_back(ge, tg.s);
            rc = -ESTALE;
            break;
        }
        rc = drain_slots(&a, &tg, &keep);
        if (rc == -EAGAIN) {
            rc = 0;                    /* the gate was taken from us: again */
            continue;
        }
        if (rc != STEP_CLAIMED)
            break;
        shmlease_lease nl;
        rc = finish_claim(&a, &tg, &nl);
        if (rc == -EAGAIN) {
            rc = 0;
            continue;
        }
        if (rc)
            break;
        /* Exclusive now: leave the slot. */
        struct shm_entry *ke = &t->entries[keep.ei];
        struct lstate ks = ls_snapshot(ke);
        if (ks.c == keep.s.c && sw_kind(ks.w) == SW_HELD && ls_cas(ke, ks, (struct lstate){SW_FREE_WORD, ks.c}))
            shmlease__wake_waiters(ke, 1);
        *l = nl;
        break;
    }
    shmlease__deathwatch_stop(&a.dw);
    return rc;
}
