/*
 * Shared and counted leases, and upgrades (include/shmlease.h, "Modes";
 * docs/state-machine.md, "Shared leases"). The steps they share with an
 * exclusive acquire are acquire.c's (acquire.h).
 */
#include "redis.h"
#include "acquire.h"
#include "cancel.h"
#include "clock.h"
#include "compiler.h"
#include "index.h"
#include "wait.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* ---- shared leases ------------------------------------------------------- */
/*
 * A key used in SHARED mode has its own entry, the gate, and one entry per
 * shared holder, its slots (key.h). The gate's aux field counts the slots
 * ever used while it lives (hw); a slot's aux is its holder's limit.
 *
 * Exclusion is a store-then-load pair on each side (docs/memory-ordering.md
 * MO-18): an exclusive acquirer claims the gate (CAS), then looks at every
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
                                   .lock_ms = shmlease__struct_lock_ms(a, shmlease__now_rel(a->t)), .free_gate = 1};
    int rc = shmlease__insert_held(a->t, &ins);
    if (rc == -EAGAIN)
        return STEP_AGAIN;
    if (rc < 0)
        return shmlease__struct_lock_gave_up(a, rc);
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
                                       .lock_ms = shmlease__struct_lock_ms(a, shmlease__now_rel(t)), .aux = lim};
        int rc = shmlease__insert_held(t, &ins);
        if (rc == -EAGAIN)
            return STEP_AGAIN;
        if (rc < 0)
            return shmlease__struct_lock_gave_up(a, rc);
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
        if (shmlease__slot_live(a, s.w, now)) {
            if (sw_kind(s.w) == SW_HELD && sw_aux(s.w) != lim)
                return -EDOM;
            *live = s.w;
            return 0;
        }
        int why = shmlease__takeable(a, s.w, now);
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

/* A live slot with a limit other than LIM, after our claim (MO-18: two
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
            shmlease__slot_live(a, w, now))
            return 1;
    }
    return 0;
}

/* A free slot among the first LIM of the gate G: an existing one, or the
 * next one, counted in the gate first. STEP_CLAIMED with SL; SLOT_FULL
 * with *SOONEST the live slot word whose deadline comes first; STEP_AGAIN;
 * or a code. */
static int find_slot(struct acquire *a, struct gate *g, uint32_t lim, struct target *sl, uint64_t *soonest)
{
    struct shm_entry *ge = &a->t->entries[g->ei];
    uint32_t hw = sw_aux(g->s.w), watch = 0, any = 0;
    uint64_t first = SW_DEADLINE_MASK;
    for (uint32_t i = 0; i < lim; i++) {
        if (i >= hw) {
            uint64_t nw = sw_with_aux(g->s.w, i + 1);
            if (!ls_cas(ge, g->s, (struct lstate){nw, g->s.c}))
                return STEP_AGAIN;
            g->s.w = nw;
            hw = i + 1;
        }
        uint64_t live = 0;
        int rc = slot_try(a, i, lim, sl, &live);
        if (rc != 0)
            return rc;
        if (sw_deadline(live) < first)
            first = sw_deadline(live);
        uint32_t owner = sw_kind(live) == SW_HELD ? sw_owner(live) : 0;
        if (!any)
            any = owner;
        if (i == a->sleeps % lim)
            watch = owner;
    }
    /* Every slot is live. Sleep until the first deadline, watching one of
     * the holders: another at each sleep, so that the process's death
     * watcher comes to know each of them (any of their deaths then wakes
     * us at once); a slot in grace has no holder to watch. */
    if (!watch)
        watch = any;
    *soonest = watch ? sw_held_aux(watch, first, 0) : sw_grace(first);
    return SLOT_FULL;
}

/* A gate that an exclusive holder (or reserver) held past its deadline, or
 * whose holder died, or whose grace is over, is FREE before a shared
 * acquirer goes by it (same claim: the former holder's lease value no
 * longer matches). Passing it unchanged would let that holder, resumed,
 * renew it and go on as if nobody had come in (section 8 of
 * docs/state-machine.md). 1 done, 0 the gate changed meanwhile. */
static int open_gate(struct shm_entry *ge, struct lstate s)
{
    if (!ls_cas(ge, s, (struct lstate){sw_free_aux(sw_aux(s.w)), s.c}))
        return 0;
    shmlease__wake_waiters(ge, 1);
    return 1;
}

/* After claiming slot SL: keeps it if the gate G is still open (MO-18) and
 * no holder of another limit came meanwhile, then fills OUT. 0, STEP_AGAIN
 * (given back: look again), or a code. */
static int keep_slot(struct acquire *a, const struct gate *g, const struct target *sl, uint32_t lim,
                     shmlease_lease *out)
{
    shmlease_table *t = a->t;
    struct shm_entry *ge = &t->entries[g->ei];
    fence_seqcst();
    uint64_t gw;
    for (;;) {
        struct lstate gs = ls_snapshot(ge);
        gw = gs.w;
        if (sw_kind(gw) == SW_RETIRED || ld_acquire(&ge->key_seq) != g->kseq ||
            !shmlease__takeable(a, gw, shmlease__now_rel(t))) {
            slot_give_back(t, sl, ge);
            return STEP_AGAIN;
        }
        if (sw_kind(gw) == SW_FREE || open_gate(ge, gs))
            break;
    }
    if (other_limit_present(a, sw_aux(gw), sl->ei, lim)) {
        slot_give_back(t, sl, ge);
        return -EDOM;
    }
    int rc = shmlease__finish_claim(a, sl, out);
    if (rc == -EAGAIN)
        return STEP_AGAIN;
    if (rc == 0)
        L_GATE(out) = (uint64_t)g->ei + 1;
    return rc;
}

/* One look at the key: 0 with OUT, STEP_AGAIN (after a sleep, or to look
 * again; *LOCKED: under the index lock), or the code that ends it. */
static int shared_round(struct acquire *a, uint32_t lim, shmlease_lease *out, int *locked)
{
    shmlease_table *t = a->t;
    struct gate g = {0};
    int rc = gate_find(a, &g, *locked);
    *locked = 0;
    if (rc != STEP_FOUND)
        return rc;
    struct shm_entry *ge = &t->entries[g.ei];
    g.s = ls_load(ge);
    if (sw_kind(g.s.w) == SW_RETIRED || ld_acquire(&ge->key_seq) != g.kseq) {
        *locked = 1;
        return STEP_AGAIN;
    }
    uint64_t now = shmlease__now_rel(t);
    if (!shmlease__takeable(a, g.s.w, now)) {
        /* Held exclusively, or reserved by an exclusive acquirer. */
        rc = shmlease__wait_or_give_up(a, ge, g.s.w, now);
        return rc ? rc : STEP_AGAIN;
    }
    if (sw_kind(g.s.w) != SW_FREE) {
        if (!open_gate(ge, g.s))
            return STEP_AGAIN;
        g.s.w = sw_free_aux(sw_aux(g.s.w));
    }
    struct target sl = {0};
    uint64_t soonest = 0;
    rc = find_slot(a, &g, lim, &sl, &soonest);
    if (rc == SLOT_FULL) {
        /* Every slot is taken: sleep on the gate (a slot's release wakes
         * it), watching the holder whose deadline comes first. */
        if (a->o->wait_ms == 0) {
            stats_inc(t, cold.refused);
            return -EBUSY;
        }
        rc = shmlease__wait_or_give_up_of(a, ge, g.s.w, soonest, shmlease__now_rel(t));
        return rc ? rc : STEP_AGAIN;
    }
    if (rc != STEP_CLAIMED)
        return rc;
    return keep_slot(a, &g, &sl, lim, out);
}

int shmlease__acquire_shared(struct acquire *a, shmlease_lease *out)
{
    uint32_t lim = a->o->limit ? a->o->limit : SHMLEASE_LIMIT_MAX;
    int locked = 0;
    for (;;) {
        int rc = shared_round(a, lim, out, &locked);
        if (rc != STEP_AGAIN)
            return rc;
    }
}

/* ---- upgrade ------------------------------------------------------------- */

/* The key of shared lease L, from its slot (a slot's bytes are its key's;
 * a held entry's key does not change). 0, or -ESTALE. */
static int lease_key(const shmlease_table *t, const shmlease_lease *l, char key[SHMLEASE_KEY_MAX + 1])
{
    const struct shm_entry *se = &t->entries[L_ENTRY(l)];
    uint32_t klen = ld_relaxed(&se->key_len);
    if (klen == 0 || klen > SHMLEASE_KEY_MAX)
        return -ESTALE;
    for (uint32_t i = 0; i < klen; i++)
        key[i] = (char)ld_relaxed(&se->key[i]);
    key[klen] = 0;
    return 0;
}

/* The key's gate for an upgrade: looked up, or (*LOCKED) found under the
 * index lock, where a gate a reaper is looking at (retired for a moment,
 * then given back: our slot is live) is back. 0, STEP_AGAIN or a code. */
static int upgrade_gate(struct acquire *a, struct target *tg, int *locked)
{
    shmlease_table *t = a->t;
    if (!*locked) {
        tg->ei = shmlease__lookup_stable(t, &a->kb, &tg->kseq);
        return 0;
    }
    struct shmlease__insert ins = {.kb = &a->kb, .owner = a->me, .ttl_ms = a->o->ttl_ms,
                                   .lock_ms = shmlease__struct_lock_ms(a, shmlease__now_rel(t)),
                                   .find_only = 1};
    int rc = shmlease__insert_held(t, &ins);
    if (rc == -EAGAIN)
        return STEP_AGAIN;
    if (rc == -ENOENT)
        return -ESTALE;                /* no gate: our slot cannot be live */
    if (rc < 0)
        return shmlease__struct_lock_gave_up(a, rc);
    tg->ei = ins.entry;
    tg->kseq = ins.key_seq;
    *locked = 0;
    return 0;
}

/* One attempt to upgrade L: 0 with *NL (the exclusive lease; the slot is
 * left), STEP_AGAIN (the gate changed under us: again), or a code. */
static int upgrade_round(struct acquire *a, shmlease_lease *l, shmlease_lease *nl, int *locked)
{
    shmlease_table *t = a->t;
    struct target tg = {0};
    int rc = upgrade_gate(a, &tg, locked);
    if (rc)
        return rc;
    if (tg.ei != (long)L_GATE(l) - 1)
        return -ESTALE;                /* the key's gate is not the one we came in by */
    struct shm_entry *ge = &t->entries[tg.ei];
    struct lstate s = ls_load(ge);
    if (sw_kind(s.w) == SW_RETIRED || ld_acquire(&ge->key_seq) != tg.kseq) {
        *locked = 1;
        return STEP_AGAIN;
    }
    uint64_t now = shmlease__now_rel(t);
    /* Held by a live exclusive acquirer: it waits for our slot, which we
     * would keep while waiting for it. */
    a->ask = 1;
    if (!shmlease__takeable(a, s.w, now))
        return -EDEADLK;
    struct lstate n = {sw_held_aux(a->me, sw_deadline_after(now, a->o->ttl_ms), sw_aux(s.w)), s.c + 1};
    if (!ls_cas(ge, s, n))
        return STEP_AGAIN;
    tg.s = n;
    struct target keep = {.ei = (long)L_ENTRY(l)};
    keep.s = ls_snapshot(&t->entries[keep.ei]);
    if (keep.s.c != L_CLAIM(l) || sw_kind(keep.s.w) != SW_HELD || sw_owner(keep.s.w) != a->me) {
        shmlease__gate_give_back(ge, tg.s);
        return -ESTALE;
    }
    rc = shmlease__drain_slots(a, &tg, &keep);
    /* The wait may have moved our shared lease's deadline (never earlier):
     * the caller's value says so, whatever comes next. */
    if (rc != -ESTALE) {
        L_WORD(l) = keep.s.w;
        l->expires_at_ms = t->created_at + sw_deadline(keep.s.w);
    }
    if (rc == -EAGAIN)
        return STEP_AGAIN;             /* the gate was taken from us */
    if (rc != STEP_CLAIMED)
        return rc;
    rc = shmlease__finish_claim(a, &tg, nl);
    if (rc == -EAGAIN)
        return STEP_AGAIN;
    if (rc)
        return rc;
    /* Exclusive now: leave the slot. */
    struct shm_entry *ke = &t->entries[keep.ei];
    struct lstate ks = ls_snapshot(ke);
    if (ks.c == keep.s.c && sw_kind(ks.w) == SW_HELD && ls_cas(ke, ks, (struct lstate){SW_FREE_WORD, ks.c}))
        shmlease__wake_waiters(ke, 1);
    return 0;
}

SHM_API int shmlease_upgrade(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms, int64_t wait_ms)
{
    if (t && t->remote)
        return -EOPNOTSUPP;               /* no shared leases on Redis */
    if (!t || !l || ttl_ms == 0 || wait_ms < SHMLEASE_WAIT_FOREVER || !L_GATE(l) ||
        L_EPOCH(l) != t->epoch || L_ENTRY(l) >= t->capacity || L_GATE(l) > t->capacity)
        return -EINVAL;
    if (t->readonly)
        return -EPERM;
    int rc = shmlease_check(t, l);
    if (rc)
        return rc;
    char key[SHMLEASE_KEY_MAX + 1];
    if ((rc = lease_key(t, l, key)) != 0)
        return rc;
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = ttl_ms;
    o.wait_ms = wait_ms;
    struct acquire a;
    memset(&a, 0, offsetof(struct acquire, kb));
    shmlease__deathwatch_init(&a.dw);
    rc = shmlease__acquire_begin(&a, t, key, &o, l);
    shmlease_lease nl;
    int locked = 0;
    while (rc == 0 && (rc = upgrade_round(&a, l, &nl, &locked)) == STEP_AGAIN)
        rc = 0;
    if (rc == 0)
        *l = nl;
    shmlease__deathwatch_stop(&a.dw);
    return rc;
}
