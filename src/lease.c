/*
 * Renew, release, release_after, check and break: each one CAS on the
 * lease state (lease.h). renew, release and release_after check the clock
 * before their CAS (the fast refusal) and again after it: a CAS cannot be
 * timed, so when the clock read after it has reached the old deadline the
 * call reports the lease lost and undoes what it did (docs/state-machine.md,
 * "Proving a call was in time").
 */
#include "redis.h"
#include "lease.h"
#include "clock.h"
#include "compiler.h"
#include "fault.h"
#include "index.h"
#include "keepalive.h"
#include "key.h"
#include "wait.h"

#include <errno.h>
#include <sched.h>

/* Checks a lease value against this handle. Returns its entry or a code. */
static long lease_entry(shmlease_table *t, const shmlease_lease *l)
{
    if (!t || !l)
        return -EINVAL;
    if (L_EPOCH(l) != t->epoch || L_ENTRY(l) >= t->capacity || sw_kind(L_WORD(l)) != SW_HELD)
        return -EINVAL;
    if (t->readonly)
        return -EPERM;
    /* A lease taken before a fork, or through an earlier registration, is not
     * this process's any more; one spent by release names owner 0. */
    uint64_t rw = handle_regword(t);
    uint32_t me = regword_slot(rw);
    if (me == 0 || L_REG(l) != rw || sw_owner(L_WORD(l)) != me)
        return -ESTALE;
    return (long)L_ENTRY(l);
}

/* Is L's claim still E's current one? Then *S is the state (one consistent
 * read). A lease value names its claim by the claim count, which never
 * repeats, and its holder: the deadline it remembers may be older than the
 * state's (another copy of the value renewed it: a keepalive, another
 * thread), which is still the same claim. */
static int current_claim(const struct shm_entry *e, const shmlease_lease *l, struct lstate *s)
{
    *s = ls_snapshot(e);
    return s->c == L_CLAIM(l) && sw_kind(s->w) == SW_HELD && sw_owner(s->w) == sw_owner(L_WORD(l));
}

/* A shared holder left its slot: shared acquirers waiting for room sleep
 * on the key's gate (acquire.c). A gate retired meanwhile only wakes
 * sleepers who look again. */
static void wake_gate(shmlease_table *t, const shmlease_lease *l)
{
    if (L_GATE(l) && L_GATE(l) <= t->capacity)
        shmlease__wake_waiters(&t->entries[L_GATE(l) - 1], 1);
}

static int lost(shmlease_table *t)
{
    stats_inc(t, cold.lost);
    return -ESTALE;
}

/* The lease value is spent: later calls on it are -ESTALE. Owner 0 (nobody)
 * matches no held state; the deadline field remembers how it ended (lease.h:
 * L_SPENT_ENDED after a release in time, L_SPENT_LOST otherwise). */
static inline void lease_spend(shmlease_lease *l, uint64_t how)
{
    L_WORD(l) = sw_held(0, how);
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
    if (ls_cas(e, n, (struct lstate){sw_free_aux(sw_aux(n.w)), n.c}))
        shmlease__wake_waiters(e, 1);
}

SHM_API int shmlease_renew(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms)
{
    if (t && t->remote)
        return shmlease__redis_renew(t, l, ttl_ms);
    long ei = lease_entry(t, l);
    if (ei == -ESTALE)
        return lost(t);
    if (ei < 0)
        return (int)ei;
    if (ttl_ms == 0)
        return -EINVAL;
    struct shm_entry *e = &t->entries[ei];
    struct lstate old, n;
    for (;;) {
        if (!current_claim(e, l, &old))
            return lost(t);
        uint64_t now = shmlease__now_rel(t);
        if (sw_deadline(old.w) <= now)
            return lost(t);
        n = (struct lstate){sw_held_aux(sw_owner(old.w), sw_deadline_after(now, ttl_ms), sw_aux(old.w)), old.c};
        SHMLEASE_FAULT("renew.before_cas");
        if (ls_cas(e, old, n))
            break;
    }
    SHMLEASE_FAULT("renew.after_cas");
    if (!cas_was_in_time(t, sw_deadline(old.w))) {
        give_up(e, n);
        lease_spend(l, L_SPENT_LOST);
        return lost(t);
    }
    /* A shorter deadline may concern waiters sleeping until the old one. */
    if (sw_deadline(n.w) < sw_deadline(old.w))
        shmlease__wake_waiters(e, 1);
    L_WORD(l) = n.w;
    l->expires_at_ms = t->created_at + sw_deadline(n.w);
    stats_inc(t, hot.renewals);
    return 0;
}

static int end_lease(shmlease_table *t, shmlease_lease *l, uint64_t grace_ms)
{
    long ei = lease_entry(t, l);
    if (ei == -ESTALE)
        return lost(t);
    if (ei < 0)
        return (int)ei;
    shmlease__keepalive_end(t, L_ENTRY(l), L_CLAIM(l));   /* the holder ends it: no "lost" */
    struct shm_entry *e = &t->entries[ei];
    struct lstate old, n;
    for (;;) {
        if (!current_claim(e, l, &old))
            return lost(t);
        /* The fast refusal of a lease plainly past its deadline may read the
         * cheap clock (it never runs ahead: what it says passed, has); the
         * proof that the CAS was in time reads the precise one. A grace
         * period's end is a deadline the caller asked for: the precise clock. */
        uint64_t now = grace_ms ? shmlease__now_rel(t) : shmlease__cheap_rel(t);
        if (sw_deadline(old.w) <= now)
            return lost(t);
        /* A gate keeps its aux (its slot count); a slot drops its limit. */
        uint32_t aux = L_GATE(l) ? 0 : sw_aux(old.w);
        n = (struct lstate){grace_ms ? sw_grace_aux(sw_deadline_after(now, grace_ms), aux) : sw_free_aux(aux),
                            old.c};
        SHMLEASE_FAULT("release.before_cas");
        if (ls_cas(e, old, n))
            break;
    }
    SHMLEASE_FAULT("release.after_cas");
    lease_spend(l, L_SPENT_LOST);
    if (!cas_was_in_time(t, sw_deadline(old.w))) {
        /* Freed after the deadline: what expiry had made of it anyway. A
         * grace period begun after the deadline is undone. */
        if (grace_ms)
            give_up(e, n);
        else
            shmlease__wake_waiters(e, 0);
        wake_gate(t, l);
        return lost(t);
    }
    lease_spend(l, L_SPENT_ENDED);
    /* A grace period changes the deadline waiters sleep towards: wake all. */
    shmlease__wake_waiters(e, grace_ms != 0);
    wake_gate(t, l);
    return 0;
}

SHM_API int shmlease_release(shmlease_table *t, shmlease_lease *l)
{
    if (t && t->remote)
        return shmlease__redis_release(t, l, 0);
    return end_lease(t, l, 0);
}

SHM_API int shmlease_release_after(shmlease_table *t, shmlease_lease *l, uint64_t grace_ms)
{
    if (t && t->remote)
        return shmlease__redis_release(t, l, grace_ms);
    return end_lease(t, l, grace_ms);
}

SHM_API int shmlease_check(shmlease_table *t, const shmlease_lease *l)
{
    if (t && t->remote)
        return shmlease__redis_check(t, l);
    long ei = lease_entry(t, l);
    if (ei == -ESTALE)
        return lost(t);
    if (ei < 0)
        return (int)ei;
    struct lstate s;
    if (!current_claim(&t->entries[ei], l, &s))
        return lost(t);
    if (sw_deadline(s.w) <= shmlease__now_rel(t))
        return lost(t);
    return 0;
}

/* Ends the live lease of KB's key (a gate or a slot: KB's hash says
 * which). 1 ended, 0 none; *HW (if not NULL) the entry's aux. */
static int break_one(shmlease_table *t, const struct keybuf *kb, uint32_t *hw)
{
    for (;;) {
        uint32_t kseq;
        long ei = shmlease__lookup_stable(t, kb, &kseq);
        if (ei < 0)
            return 0;
        struct shm_entry *e = &t->entries[ei];
        struct lstate s = ls_load(e);
        if (ld_acquire(&e->key_seq) != kseq)
            continue;                  /* entry reused for another key meanwhile */
        if (hw)
            *hw = sw_aux(s.w);         /* a gate retired for a moment keeps it */
        if (!sw_live(s.w, shmlease__now_rel(t)))
            return 0;
        if (ls_cas(e, s, (struct lstate){sw_free_aux(hw ? sw_aux(s.w) : 0), s.c})) {
            shmlease__wake_waiters(e, 1);
            stats_inc(t, cold.broken);
            return 1;
        }
    }
}

SHM_API int shmlease_break(shmlease_table *t, const char *key)
{
    if (t && t->remote)
        return shmlease__redis_break(t, key);
    struct keybuf kb;
    if (!t)
        return -EINVAL;
    int rc = shmlease__key_prepare(t, key, &kb);
    if (rc)
        return rc;
    if (t->readonly)
        return -EPERM;
    /* The exclusive holder (or an exclusive acquirer waiting for shared
     * holders) first; then every shared holder (docs/state-machine.md,
     * section 8), whose leaving wakes the key's waiters. */
    uint32_t hw = 0;
    int n = break_one(t, &kb, &hw);
    for (uint32_t i = 0; i < hw; i++) {
        struct keybuf skb;
        shmlease__slot_key(&kb, i, &skb);
        n += break_one(t, &skb, NULL);
    }
    if (hw) {
        uint32_t ks;
        long gi = shmlease__lookup_stable(t, &kb, &ks);
        if (gi >= 0)
            shmlease__wake_waiters(&t->entries[gi], 1);
    }
    return n ? 0 : -ENOENT;
}
