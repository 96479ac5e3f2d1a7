/*
 * Acquiring a lease: one call split into named steps (shmlease__acquire_begin,
 * insert_or_find, claim_entry with shmlease__takeable and shmlease__wait_or_give_up,
 * shmlease__finish_claim), driven by acquire_run. The state transitions are those of
 * lease.h; waiting is wait.c's; the key index is index.c's.
 *
 * Fencing tokens: drawn from the table's counter (one atomic add) AFTER the
 * claiming CAS, then we check that the state is still ours. So a token is
 * always drawn while its claim is current: anyone who later takes the key
 * over (after expiry, death or break) draws a later, greater token. Tokens
 * are greater than all tokens drawn before, for any key, for the life of the
 * segment (docs/state-machine.md, "Fencing tokens").
 */
#include "acquire.h"
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

#define KNOWN_ACQUIRE_FLAGS SHMLEASE_ACQUIRE_FAIR  /* opts.flags this version knows */

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


/* How long an acquire may wait for a structural lock: a try allows
 * STRUCT_TRY_MS for a stopped lock holder, a timed wait what is left of it. */
uint64_t shmlease__struct_lock_ms(struct acquire *a, uint64_t now)
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
int shmlease__struct_lock_gave_up(struct acquire *a, int rc)
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

int shmlease__acquire_opts_check(const shmlease_table *t, const shmlease_acquire_opts *o)
{
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
    return t->readonly ? -EPERM : 0;
}

int shmlease__acquire_begin(struct acquire *a, shmlease_table *t, const char *key,
                         const shmlease_acquire_opts *o, const shmlease_lease *out)
{
    if (!t || !o || !out)
        return -EINVAL;
    int rc = shmlease__key_prepare(t, key, &a->kb);
    if (rc)
        return rc;
    rc = shmlease__acquire_opts_check(t, o);
    if (rc)
        return rc;
    a->t = t;
    a->o = o;
    /* Not yet registered in this process (a fork child): register, waiting
     * for the registry lock as long as the call may wait. */
    if (unlikely(handle_slot(t) == 0)) {
        rc = shmlease__ensure_registered(t, shmlease__struct_lock_ms(a, shmlease__now_rel(t)));
        if (rc)
            return shmlease__struct_lock_gave_up(a, rc);
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
                                   .lock_ms = shmlease__struct_lock_ms(a, shmlease__now_rel(a->t))};
    int rc = shmlease__insert_held(a->t, &ins);
    if (rc == -EAGAIN)
        return STEP_AGAIN;
    if (rc < 0)
        return shmlease__struct_lock_gave_up(a, rc);
    tg->ei = ins.entry;
    tg->kseq = ins.key_seq;
    tg->s = ins.state;
    return ins.inserted ? STEP_CLAIMED : STEP_FOUND;
}


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

int shmlease__takeable(struct acquire *a, uint64_t w, uint64_t now)
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

/* Waits on entry E (state W), watching the holder and deadline of WATCH (W
 * itself, or a shared holder's slot while E is the key's gate), or gives
 * up. 0 after a sleep, or the code that ends the acquire. */
static int wait_on(struct acquire *a, struct shm_entry *e, uint64_t w, uint64_t watch, uint64_t now)
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
    int ask = shmlease__wait_for_change_of(t, e, w, watch, now, a->wait_until, &a->dw, shmlease__alive,
                                           a->o->cancel);
    /* Slots watched from their gate are looked at again: ask about their
     * holders then. */
    a->ask = watch == w ? ask : 1;
    a->sleeps++;
    if (shmlease__cancel_fired(a->o->cancel)) {
        shmlease__wake_waiters(e, 0);   /* pass on a wake-up we may have consumed */
        return -ECANCELED;
    }
    return a->queued ? shmlease__keep_place(a) : 0;
}

/* The key is held by someone else (or by us: leases are not re-entrant). */
int shmlease__wait_or_give_up(struct acquire *a, struct shm_entry *e, uint64_t w, uint64_t now)
{
    return wait_on(a, e, w, w, now);
}

int shmlease__wait_or_give_up_of(struct acquire *a, struct shm_entry *e, uint64_t w, uint64_t watch,
                                 uint64_t now)
{
    return wait_on(a, e, w, watch, now);
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
         * asked; shmlease__finish_claim bounds how much earlier). A wait sleeps and
         * times out on the precise one. */
        uint64_t now = shmlease__cheap_rel(t);
        if ((sw_kind(s.w) != SW_FREE && a->o->wait_ms != 0) ||
            a->o->ttl_ms <= SHORT_TTL_LAGS * (uint64_t)shmlease__cheap_lag_ms(t))
            now = shmlease__now_rel(t);   /* a wait, or a TTL the cheap clock's lag would eat */
        int why = shmlease__takeable(a, s.w, now);
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
        int rc = shmlease__wait_or_give_up(a, e, s.w, now);
        if (rc)
            return rc;
    }
}

/* Draws the fencing token of a claim and fills the lease. 0, or -EAGAIN when
 * the claim was lost before its token was drawn (start over). */
int shmlease__finish_claim(struct acquire *a, const struct target *tg, shmlease_lease *out)
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

/* Gives back a gate we claimed but cannot keep (a try, a timeout, a cancel,
 * an upgrade that failed): FREE, aux kept, and its waiters woken. */
void shmlease__gate_give_back(struct shm_entry *e, struct lstate s)
{
    if (ls_cas(e, s, (struct lstate){sw_free_aux(sw_aux(s.w)), s.c}))
        shmlease__wake_waiters(e, 1);
}

/* Is slot state S live: held or in grace, before its deadline, its holder
 * not known dead? (A holder whose liveness we may not ask counts as live:
 * the waits that follow ask.) */
int shmlease__slot_live(struct acquire *a, uint64_t w, uint64_t now)
{
    uint64_t k = sw_kind(w);
    if (k != SW_HELD && k != SW_GRACE)
        return 0;
    return !shmlease__takeable(a, w, now);
}

/* The first live slot among 0..HW-1 other than entry SKIP (-1: none), seen
 * after a sequentially consistent fence (MO-18). Returns its entry and
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
        struct shm_entry *se = &t->entries[ei];
        for (;;) {
            struct lstate ss = ls_snapshot(se);
            if (ld_acquire(&se->key_seq) != kseq || sw_kind(ss.w) == SW_RETIRED || sw_kind(ss.w) == SW_FREE)
                break;                 /* free, or retired and reused: not our slot any more */
            if (shmlease__slot_live(a, ss.w, now)) {
                *w = ss.w;
                return ei;
            }
            /* Expired, or its holder dead: closed (FREE, same claim) before
             * we go by it, so that its claimer, late, cannot move its
             * deadline and hold it beside us (docs/state-machine.md,
             * section 8). A changed state is looked at again. */
            if (ls_cas(se, ss, (struct lstate){SW_FREE_WORD, ss.c})) {
                shmlease__wake_waiters(se, 1);
                break;
            }
        }
    }
    return -1;
}

/* After claiming the gate (TG->s) of a key whose gate counts slots: waits
 * until no slot but SKIP is live, renewing the gate at each look.
 * STEP_CLAIMED (TG->s the renewed gate), -EAGAIN (the gate was lost: start
 * over), or the code that ends the acquire, after giving the gate back. */
int shmlease__drain_slots(struct acquire *a, struct target *tg, struct target *keep)
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
            /* Never shortened: only moved to now + ttl when that is later. */
            struct shm_entry *ke = &t->entries[keep->ei];
            uint64_t kd = sw_deadline_after(now, a->o->ttl_ms);
            if (kd < sw_deadline(keep->s.w))
                kd = sw_deadline(keep->s.w);
            struct lstate kn = {sw_held_aux(a->me, kd, sw_aux(keep->s.w)), keep->s.c};
            if (sw_deadline(keep->s.w) <= now || !ls_cas(ke, keep->s, kn)) {
                shmlease__gate_give_back(e, tg->s);
                return -ESTALE;
            }
            keep->s = kn;
        }
        uint64_t sw;
        long si = live_slot(a, sw_aux(n.w), skip, &sw);
        if (si < 0) {
            SHMLEASE_FAULT("drain.after_scan");
            return STEP_CLAIMED;
        }
        /* Sleep on that slot (its release, deadline, or holder's death
         * wake us), but wake to renew the gate before a third of its TTL is
         * left: a reservation that lapses lets shared acquirers in. */
        uint64_t renew_at = sw_deadline(n.w) - a->o->ttl_ms / 3;
        uint64_t watch = sw_deadline(sw) <= renew_at ? sw
                         : sw_kind(sw) == SW_HELD ? sw_held_aux(sw_owner(sw), renew_at, 0)
                                                  : sw_grace(renew_at);
        int rc = shmlease__wait_or_give_up_of(a, &t->entries[si], sw, watch, shmlease__now_rel(t));
        if (rc) {
            shmlease__gate_give_back(e, tg->s);
            return rc;
        }
    }
}

/* An EXCLUSIVE acquire, once begun: 0 with OUT, or the code that ends it. */
int shmlease__acquire_exclusive(struct acquire *a, shmlease_lease *out)
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
        /* A key with shared-holder slots: wait for them to leave. */
        if (rc == STEP_CLAIMED && sw_aux(tg.s.w) != 0)
            rc = shmlease__drain_slots(a, &tg, NULL);
        if (rc == STEP_CLAIMED && (rc = shmlease__finish_claim(a, &tg, out)) == 0)
            return 0;
        if (rc < 0 && rc != -EAGAIN)
            return rc;
    }
}

/* A fair waiter's place, renewed after each of its sleeps (fair.c). */
int shmlease__keep_place(struct acquire *a)
{
    shmlease_table *t = a->t;
    struct shm_entry *pe = &t->entries[a->place.ei];
    for (;;) {
        struct lstate s = ls_snapshot(pe);
        uint64_t now = shmlease__now_rel(t);
        if (s.c != a->place.s.c || sw_kind(s.w) != SW_HELD || sw_owner(s.w) != a->me ||
            sw_deadline(s.w) <= now) {
            a->queued = 0;           /* lost: whoever comes next passed us */
            return -ENOLINK;
        }
        struct lstate n = {sw_held(a->me, sw_deadline_after(now, PLACE_TTL_MS)), s.c};
        if (ls_cas(pe, s, n)) {
            a->place.s = n;
            return 0;
        }
    }
}
