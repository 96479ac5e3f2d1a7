/*
 * shared.pml: shared and exclusive leases of one key (the gate and its
 * slots), upgrades and the reaper's retire-check-restore of a gate, checked
 * exhaustively with Spin. tests/model/run builds and runs it; README.md says
 * what is modelled, what is not, and what the runs found.
 *
 * The protocol (docs/state-machine.md sections 2 and 8, memory-ordering.md
 * MO-18; src/shared.c, src/acquire.c, src/index.c, src/lease.c):
 *   - the gate: the key's own entry {kind, owner, deadline, aux = hw, claim};
 *     an exclusive holder holds it; hw counts the slots ever used;
 *   - slots 0..LIMIT-1: one entry per shared holder, {kind, owner,
 *     deadline, claim}, claimed and taken over like any lease;
 *   - a shared acquirer claims a slot (raising hw first when the slot is
 *     new), then looks at the gate again (fence, load): if it is not
 *     takeable (held by a live exclusive acquirer), or was retired, it gives
 *     the slot back;
 *   - an exclusive acquirer claims the gate, then drains: renew the gate,
 *     fence, look at slots 0..hw-1; wait for a live one and start the drain
 *     again; return after a look that found none;
 *   - an upgrader (a shared holder) claims the gate only if it is
 *     takeable, else -EDEADLK; then drains every slot but its own, renewing
 *     its own slot at each look, and leaves its slot;
 *   - the reaper retires a gate (CAS to RETIRED), fences, looks at slots
 *     0..hw-1, and gives the gate its state back if one is live (all under
 *     the index lock); else the entry is gone and the key's next user
 *     inserts a new gate (hw 0).
 *
 * Switches (spin -D... -a shared.pml):
 *   NO_RELOOK    the shared acquirer does not look at the gate again after
 *                claiming its slot. Expected to fail exclusion.
 *   NO_RESCAN    the drain looks at the slots, then renews the gate, and
 *                does not look again after that renew. Expected to fail.
 *   NO_EDEADLK   an upgrader that finds the gate held waits for it instead
 *                of returning -EDEADLK. Expected to deadlock (invalid end
 *                state).
 *   NO_REAP_CHECK  the reaper retires a gate with hw > 0 without looking at
 *                its slots. Expected to fail exclusion.
 *   FRESH_FIX    the fix of finding 1 (README.md): when acquire's last
 *                step (shmlease__finish_claim) moves the deadline of a gate
 *                with hw > 0, the drain runs again (renew, fence, look);
 *                when it moves a slot's, the clock is read after the CAS
 *                and a slot whose old deadline had passed is given back.
 *   NP           processes (2 or 3); OPS1..OPS3 acquires each;
 *   LIMIT        slots (the shared limit); HORIZON, TTL the clock bounds;
 *   CLAIMS       claiming CASes each process may make (then it ends);
 *   DEATHS       processes killed by the death process (besides exits);
 *   RETIRES      the reaper's attempts.
 *
 * Interleaving: every step is one shared access (a load of an entry's
 * state, a 16-byte CAS, a clock read) plus local work; Spin's interleaving is
 * sequentially consistent, which is what the seq_cst fences of MO-18 give
 * the store-then-load pairs. Nothing weaker than that is modelled.
 *
 * Waiting: an acquirer that waits blocks until what it waits for has
 * changed (the entry's state, the clock reaching the deadline it saw, the
 * holder's death): wake-ups themselves are not modelled. A process blocked
 * for ever is an invalid end state for Spin.
 *
 * The printf calls only run when a trail is replayed (spin -t).
 */

/* ---- bounds --------------------------------------------------------------- */
#ifndef NP
#define NP 3
#endif
#ifndef LIMIT
#define LIMIT 2
#endif
#ifndef HORIZON
#define HORIZON 2          /* the clock runs 0..HORIZON */
#endif
#ifndef TTL
#define TTL 2
#endif
#ifndef DEATHS
#define DEATHS 1
#endif
#ifndef RETIRES
#define RETIRES 1
#endif
/* What each process does (ROLE1..ROLE3): anything; shared acquires (then
 * release, or end holding); shared acquires then upgrades; exclusive
 * acquires (then release, or end holding). */
#define R_ANY 0
#define R_SH  1
#define R_UP  2
#define R_EX  3
#ifndef ROLE1
#define ROLE1 R_ANY
#endif
#ifndef ROLE2
#define ROLE2 R_ANY
#endif
#ifndef ROLE3
#define ROLE3 R_ANY
#endif
#ifndef CLAIMS
#define CLAIMS 2           /* claiming CASes a process may make: keeps the claim
                              counters finite; a process that has spent them
                              gives up (ends, as if it exited) */
#endif
#ifndef OPS1
#define OPS1 1
#endif
#ifndef OPS2
#define OPS2 1
#endif
#ifndef OPS3
#define OPS3 1
#endif

/* ---- the entries ---------------------------------------------------------- */
#define RET  0             /* RETIRED: the entry holds no key */
#define FREE 1
#define HELD 2             /* GRACE is not modelled */

/* The gate. */
byte gk = FREE, go, gd, ga, gc;
byte gseq;                 /* the gate entry's key_seq: a new gate, a new seq */
bool gdone;                /* retired for good: the key has no gate */
bool ilock;                /* the index lock (the reaper holds it) */

/* The slots. */
byte sk[LIMIT], so[LIMIT], sd[LIMIT], sc[LIMIT];

byte now;                  /* the table clock */
bool alive[NP + 1];        /* per process 1..NP (0 is nobody) */

/* Ghosts: what each process believes it holds. */
bool hx[NP + 1];           /* an exclusive lease: gate claim xc */
byte xc[NP + 1];
bool hs[NP + 1];           /* a shared lease: slot si, claim ssc */
byte si[NP + 1], ssc[NP + 1];

/* A lease is valid (shmlease_check would return 0) while its process is
 * alive and the entry is in its claim, HELD by it, before the deadline. */
#define VX(p) (hx[p] && alive[p] && gk == HELD && go == p && gc == xc[p] && now < gd)
#define VS(p) (hs[p] && alive[p] && sk[si[p]] == HELD && so[si[p]] == p && \
               sc[si[p]] == ssc[p] && now < sd[si[p]])
/* p holds exclusively and q holds anything. */
#define CLASH(p, q) (VX(p) && (VX(q) || VS(q)))
#if NP == 2
#define EXCL (!CLASH(1, 2) && !CLASH(2, 1))
#define NSHARED (VS(1) + VS(2))
#else
#define EXCL (!CLASH(1, 2) && !CLASH(2, 1) && !CLASH(1, 3) && !CLASH(3, 1) && \
              !CLASH(2, 3) && !CLASH(3, 2))
#define NSHARED (VS(1) + VS(2) + VS(3))
#endif

/* Takeable at clock t (shmlease__takeable with an exact liveness oracle). */
#define TAKEABLE(k, o, d, t) ((k) == FREE || ((k) == HELD && ((d) <= (t) || !alive[o])))
/* A live slot (shmlease__slot_live). */
#define LIVE(k, o, d, t) ((k) == HELD && (d) > (t) && alive[o])

#define SHOW_GATE printf("  gate {kind %d owner %d deadline %d hw %d, claim %d} seq %d now %d\n", \
                         gk, go, gd, ga, gc, gseq, now)

/* ---- the monitor ---------------------------------------------------------- */
active proctype monitor()
{
end_mon:
    atomic { !(EXCL && NSHARED <= LIMIT) -> assert(EXCL && NSHARED <= LIMIT) }
}

/* ---- the clock: any process may be stopped for any time ------------------- */
active proctype clock()
{
end_tick:
    do
    :: now < HORIZON -> d_step { now++; printf("clock: now %d\n", now) }
    od
}

/* ---- death ---------------------------------------------------------------- */
active proctype death()
{
    byte n = DEATHS;
end_death:
    do
    :: d_step { n > 0 && alive[1] -> alive[1] = false; n--; printf("process 1 dies\n") }
    :: d_step { n > 0 && alive[2] -> alive[2] = false; n--; printf("process 2 dies\n") }
#if NP >= 3
    :: d_step { n > 0 && alive[3] -> alive[3] = false; n--; printf("process 3 dies\n") }
#endif
    od
}

/* ---- the reaper (index.c reap, guards_live) ------------------------------- */
active proctype reaper()
{
    byte r = RETIRES, k, o, d, a, c, t, i;
end_reap:
    do
    :: r > 0 ->
        atomic { !ilock -> ilock = true; r-- };
        /* retirable(): FREE, or HELD expired or dead */
        d_step {
            k = gk; o = go; d = gd; a = ga; c = gc; t = now
        }
        if
        :: k == FREE || (k == HELD && (d <= t || !alive[o])) -> skip
        :: else -> goto unlock
        fi;
        d_step {
            if
            :: gk == k && go == o && gd == d && ga == a && gc == c ->
                gk = RET; printf("reaper: retires the gate\n"); SHOW_GATE
            :: else -> k = RET
            fi
        }
        if
        :: k == RET -> goto unlock
        :: else -> skip
        fi;
#ifndef NO_REAP_CHECK
        /* fence, then the slots 0..hw-1: one live, give the state back */
        i = 0;
        do
        :: i < a && LIVE(sk[i], so[i], sd[i], t) ->
            d_step { gk = k; printf("reaper: slot %d is live, gives the gate back\n", i) };
            goto unlock
        :: i < a && !LIVE(sk[i], so[i], sd[i], t) -> i++
        :: else -> break
        od;
#endif
        skip;
        d_step { gdone = true; printf("reaper: the gate is gone\n") };
unlock: skip;
        d_step { ilock = false; k = 0; o = 0; d = 0; a = 0; c = 0; t = 0; i = 0 }
    od
}

/* ---- processes ------------------------------------------------------------ */
/* Looks the gate up and loads it: a retired gate sends the acquirer to a
 * look-up under the index lock, which waits for the reaper; a key with no
 * gate gets one (a shared acquirer's is FREE; an exclusive acquirer's is
 * HELD by it, a new claim). */
inline load_gate(excl)
{
    atomic {
        (gk != RET || !ilock) ->
        ins = false;
        if
        :: gk == RET ->
            assert(gdone);
            gdone = false; gseq++; ga = 0;
            if
            :: excl -> gk = HELD; go = me; gd = now + TTL; gc++; ins = true; cb--;
                printf("P%d inserts the gate HELD\n", me)
            :: else -> gk = FREE; go = 0; gd = 0;
                printf("P%d inserts the gate FREE\n", me)
            fi
        :: else -> skip
        fi;
        k = gk; o = go; d = gd; a = ga; c = gc; q = gseq; t = now
    }
}

/* Waits until the gate is no longer {k, o, d, a, c} of seq q, or its
 * deadline has come, or its holder died. */
#define GATE_SAME (gk == k && go == o && gd == d && ga == a && gc == c && gseq == q)
#define WAIT_GATE (!GATE_SAME || now >= d || !alive[o])
#define SLOT_SAME(i) (sk[i] == lk && so[i] == lo && sd[i] == ld && sc[i] == lc)
#define WAIT_SLOT(i) (!SLOT_SAME(i) || now >= ld || !alive[lo])
/* Every slot full: the wait on the gate ends when a slot may be free. */
#if LIMIT == 1
#define SOME_ROOM (!LIVE(sk[0], so[0], sd[0], now))
#else
#define SOME_ROOM (!LIVE(sk[0], so[0], sd[0], now) || !LIVE(sk[1], so[1], sd[1], now))
#endif

/* After a claim of the gate as {HELD me, md, xa, mc}: drain the slots but
 * KEEP (LIMIT: none), renewing the gate (and slot KEEP) at each look.
 * Leaves ok: 1 drained, 0 the gate was lost (start over), 2 -ESTALE (the
 * kept slot is lost; the gate given back). */
inline drain(keep)
{
    do
    :: true ->
#ifdef NO_RESCAN
        /* the broken order: look at the slots, then renew, no look after */
        d_step { fence_t = now };
        j = 0;
        do
        :: j < xa && j == keep -> j++
        :: j < xa && j != keep ->
            d_step { lk = sk[j]; lo = so[j]; ld = sd[j]; lc = sc[j] };
            if
            :: LIVE(lk, lo, ld, fence_t) -> break
            :: else -> j++
            fi
        :: j >= xa -> break
        od;
        if
        :: j < xa -> (WAIT_SLOT(j)); lk = 0; lo = 0; ld = 0; lc = 0
        :: else -> skip
        fi;
#endif
        d_step { t = now };
        d_step {
            if
            :: gk == HELD && go == me && gd == md && ga == xa && gc == mc ->
                gd = t + TTL; md = gd; ok = 1;
                printf("P%d renews the gate (drain)\n", me); SHOW_GATE
            :: else -> ok = 0
            fi
        }
        if
        :: ok == 0 -> break
        :: else -> skip
        fi;
        if
        :: keep < LIMIT ->
            d_step {
                if
                :: ksd > t && sk[keep] == HELD && so[keep] == me && sd[keep] == ksd && sc[keep] == ssc[me] ->
                    sd[keep] = t + TTL; ksd = t + TTL
                :: else -> ok = 2
                fi
            };
            if
            :: ok == 2 ->
                d_step {
                    if
                    :: gk == HELD && go == me && gd == md && gc == mc -> gk = FREE; go = 0; gd = 0
                    :: else -> skip
                    fi
                };
                break
            :: else -> skip
            fi
        :: else -> skip
        fi;
#ifdef NO_RESCAN
        if
        :: j >= xa -> ok = 1; break
        :: else -> skip
        fi
#else
        /* fence, clock read, then the slots (live_slot) */
        d_step { fence_t = now };
        j = 0;
        do
        :: j < xa && j == keep -> j++
        :: j < xa && j != keep ->
            d_step { lk = sk[j]; lo = so[j]; ld = sd[j]; lc = sc[j] };
            if
            :: LIVE(lk, lo, ld, fence_t) -> break
            :: else -> j++
            fi
        :: j >= xa -> break
        od;
        if
        :: j >= xa -> ok = 1; break
        :: else ->
            printf("P%d drains: slot %d is live, waits\n", me, j);
            (WAIT_SLOT(j)); lk = 0; lo = 0; ld = 0; lc = 0
        fi
#endif
    od
}

/* shmlease__finish_claim on the gate {HELD me, md, xa, mc}: still ours (the
 * token is drawn before this load), then moved to now + TTL by a renew-like
 * CAS if the clock moved since the claim. ok: 1 done, 0 lost. */
inline finish_gate()
{
    d_step { ok = (gk == HELD && go == me && gd == md && ga == xa && gc == mc) };
    if
    :: ok ->
        d_step { t = now };
        if
        :: t + TTL > md ->
            d_step {
                if
                :: gk == HELD && go == me && gd == md && ga == xa && gc == mc ->
                    gd = t + TTL; md = gd; printf("P%d moves its fresh gate's deadline\n", me);
#ifdef FRESH_FIX
                    if
                    :: xa > 0 -> ok = 3
                    :: else -> skip
                    fi
#endif
                :: else -> ok = 0
                fi
            }
        :: else -> skip
        fi
    :: else -> skip
    fi
}

proctype proc(byte me; byte ops; byte role)
{
    byte cb = CLAIMS;              /* claiming CASes left */
    byte k, o, d, a, c, q, t, i, j, fence_t;
    byte lk, lo, ld, lc;           /* a load of a slot */
    bool ins;
    byte ok;
    byte md, mc, xa, ksd, mq;      /* our claim of the gate: deadline, claim, hw, seq */

    {
    do
    :: ops > 0 ->
        ops--;
        if
        /* ================= shared acquire (shared.c) ================= */
        :: role != R_EX ->
s_top: skip;
            if
            :: cb == 0 -> printf("P%d gives up (its claim budget is spent)\n", me); goto quit
            :: else -> skip
            fi;
            load_gate(false);
            if
            :: !TAKEABLE(k, o, d, t) ->
                printf("P%d shared: the gate is held, waits\n", me);
                (WAIT_GATE); goto s_top
            :: else -> skip
            fi;
            mq = q;
            i = 0;
s_find: skip;
            if
            :: i >= LIMIT ->
                printf("P%d shared: every slot is live, waits\n", me);
                (SOME_ROOM || !GATE_SAME); goto s_top
            :: else -> skip
            fi;
            if
            :: i >= a ->
                /* raise hw: a CAS that changes nothing else */
                d_step {
                    if
                    :: gk == k && go == o && gd == d && ga == a && gc == c ->
                        ga = i + 1; a = ga; ok = 1
                    :: else -> ok = 0
                    fi
                };
                if
                :: ok == 0 -> goto s_top
                :: else -> skip
                fi
            :: else -> skip
            fi;
            /* slot_try: load, clock, CAS */
s_try: skip;
            d_step { lk = sk[i]; lo = so[i]; ld = sd[i]; lc = sc[i]; t = now };
            if
            :: LIVE(lk, lo, ld, t) -> i++; goto s_find
            :: else -> skip
            fi;
            d_step {
                if
                :: sk[i] == lk && so[i] == lo && sd[i] == ld && sc[i] == lc ->
                    sk[i] = HELD; so[i] = me; sd[i] = t + TTL; sc[i]++; cb--;
                    si[me] = i; ssc[me] = sc[i]; ksd = sd[i]; ok = 1;
                    printf("P%d claims slot %d (deadline %d, claim %d)\n", me, i, ksd, sc[i])
                :: else -> ok = 0
                fi
            };
            if
            :: ok == 0 -> goto s_try
            :: else -> skip
            fi;
#ifndef NO_RELOOK
            /* keep_slot: fence, then the gate again */
            d_step {
                ok = !(gk == RET || gseq != mq || !TAKEABLE(gk, go, gd, now))
            };
            if
            :: !ok ->
                printf("P%d shared: the gate closed, gives slot %d back\n", me, i);
                d_step {
                    if
                    :: sk[i] == HELD && so[i] == me && sc[i] == ssc[me] -> sk[i] = FREE; so[i] = 0; sd[i] = 0
                    :: else -> skip
                    fi
                };
                goto s_top
            :: else -> skip
            fi;
#endif
            /* finish_claim: still ours, then a fresh deadline */
            d_step { ok = (sk[i] == HELD && so[i] == me && sd[i] == ksd && sc[i] == ssc[me]) };
            if
            :: !ok -> goto s_top
            :: else -> skip
            fi;
            d_step { t = now };
            if
            :: t + TTL > ksd ->
                d_step {
                    if
                    :: sk[i] == HELD && so[i] == me && sd[i] == ksd && sc[i] == ssc[me] ->
                        sd[i] = t + TTL; t = ksd; ksd = sd[i]
                    :: else -> ok = 0
                    fi
                };
                if
                :: !ok -> goto s_top
                :: else -> skip
                fi;
#ifdef FRESH_FIX
                /* the clock after the CAS: was the old deadline still ahead? */
                if
                :: d_step { now >= t ->
                        printf("P%d: the slot's deadline had passed: gives it back\n", me);
                        if
                        :: sk[i] == HELD && so[i] == me && sd[i] == ksd && sc[i] == ssc[me] ->
                            sk[i] = FREE; so[i] = 0; sd[i] = 0
                        :: else -> skip
                        fi };
                    goto s_top
                :: else -> skip
                fi;
#endif
                t = 0
            :: else -> skip
            fi;
            d_step {
                hs[me] = true;
                printf("P%d shared acquire -> 0: slot %d\n", me, i);
                k = 0; o = 0; d = 0; a = 0; c = 0; q = 0; t = 0
            };
            /* ---- then: release, upgrade, or keep it ---- */
            if
            :: role != R_UP ->
                /* release: current, before the deadline, CAS to FREE */
                d_step {
                    if
                    :: sk[i] == HELD && so[i] == me && sc[i] == ssc[me] && now < sd[i] ->
                        sk[i] = FREE; so[i] = 0; sd[i] = 0;
                        printf("P%d releases slot %d\n", me, i)
                    :: else -> printf("P%d release: -ESTALE\n", me)
                    fi;
                    hs[me] = false
                }
            :: role == R_ANY || role == R_UP ->
                /* ======== upgrade (shared.c upgrade_round) ======== */
                d_step { ok = (sk[i] == HELD && so[i] == me && sc[i] == ssc[me] && now < sd[i]) };
                if
                :: !ok -> d_step { hs[me] = false; printf("P%d upgrade: -ESTALE\n", me) }; goto next
                :: else -> skip
                fi;
u_top: skip;
            if
            :: cb == 0 -> printf("P%d gives up (its claim budget is spent)\n", me); goto quit
            :: else -> skip
            fi;
            d_step { k = gk; o = go; d = gd; a = ga; c = gc; q = gseq; t = now };
                if
                :: k == RET || q != mq ->
                    printf("P%d upgrade: -ESTALE (the gate)\n", me); goto u_fail
                :: else -> skip
                fi;
                if
                :: !TAKEABLE(k, o, d, t) ->
#ifdef NO_EDEADLK
                    printf("P%d upgrade: the gate is held, waits\n", me);
                    (WAIT_GATE); goto u_top
#else
                    printf("P%d upgrade: -EDEADLK\n", me); goto u_fail
#endif
                :: else -> skip
                fi;
                d_step {
                    if
                    :: gk == k && go == o && gd == d && ga == a && gc == c ->
                        gk = HELD; go = me; gd = t + TTL; gc++; cb--;
                        md = gd; mc = gc; xa = ga; ok = 1;
                        printf("P%d upgrade claims the gate\n", me); SHOW_GATE
                    :: else -> ok = 0
                    fi
                };
                if
                :: ok == 0 -> goto u_top
                :: else -> skip
                fi;
                d_step {
                    ok = (sc[i] == ssc[me] && sk[i] == HELD && so[i] == me); ksd = sd[i]
                };
                if
                :: !ok ->
                    d_step {
                        if
                        :: gk == HELD && go == me && gd == md && gc == mc -> gk = FREE; go = 0; gd = 0
                        :: else -> skip
                        fi
                    };
                    d_step { hs[me] = false; printf("P%d upgrade: -ESTALE (slot)\n", me) };
                    goto next
                :: else -> skip
                fi;
u_drain: skip;
                drain(i);
                if
                :: ok == 0 -> goto u_top
                :: ok == 2 -> d_step { hs[me] = false; printf("P%d upgrade: -ESTALE (slot)\n", me) }; goto next
                :: else -> skip
                fi;
                finish_gate();
                if
                :: ok == 0 -> goto u_top
                :: ok == 3 -> goto u_drain
                :: else -> skip
                fi;
                d_step { xc[me] = mc; hx[me] = true; printf("P%d upgrade -> 0\n", me) };
                /* leave the slot */
                d_step {
                    if
                    :: sc[i] == ssc[me] && sk[i] == HELD -> sk[i] = FREE; so[i] = 0; sd[i] = 0
                    :: else -> skip
                    fi;
                    hs[me] = false
                };
                goto x_hold;
u_fail: skip;
            /* the caller releases its shared lease */
                d_step {
                    if
                    :: sk[i] == HELD && so[i] == me && sc[i] == ssc[me] && now < sd[i] ->
                        sk[i] = FREE; so[i] = 0; sd[i] = 0
                    :: else -> skip
                    fi;
                    hs[me] = false
                }
            :: role != R_UP -> skip      /* keep it: the process ends holding it */
            fi
        /* ================= exclusive acquire (acquire.c) ================= */
        :: role == R_ANY || role == R_EX ->
x_top: skip;
            if
            :: cb == 0 -> printf("P%d gives up (its claim budget is spent)\n", me); goto quit
            :: else -> skip
            fi;
            load_gate(true);
            if
            :: ins -> md = d; mc = c; xa = 0; goto x_fin
            :: else -> skip
            fi;
            if
            :: !TAKEABLE(k, o, d, t) ->
                printf("P%d exclusive: the gate is held, waits\n", me);
                (WAIT_GATE); goto x_top
            :: else -> skip
            fi;
            d_step {
                if
                :: gk == k && go == o && gd == d && ga == a && gc == c ->
                    gk = HELD; go = me; gd = t + TTL; gc++; cb--;
                    md = gd; mc = gc; xa = ga; ok = 1;
                    printf("P%d claims the gate\n", me); SHOW_GATE
                :: else -> ok = 0
                fi
            };
            if
            :: ok == 0 -> goto x_top
            :: else -> skip
            fi;
            if
            :: xa > 0 ->
x_drain: skip;
                drain(LIMIT);
                if
                :: ok == 0 -> goto x_top
                :: else -> skip
                fi
            :: else -> skip
            fi;
x_fin: skip;
            finish_gate();
            if
            :: ok == 0 -> goto x_top
            :: ok == 3 -> goto x_drain
            :: else -> skip
            fi;
            d_step { xc[me] = mc; hx[me] = true; printf("P%d exclusive acquire -> 0\n", me) };
x_hold: skip;
            if
            :: d_step {
                   /* release: current, before the deadline, CAS to FREE (hw kept) */
                   if
                   :: gk == HELD && go == me && gc == mc && now < gd ->
                       gk = FREE; go = 0; gd = 0; printf("P%d releases the gate\n", me)
                   :: else -> printf("P%d release: -ESTALE\n", me)
                   fi;
                   hx[me] = false
               }
            :: true -> skip      /* keep it: the process ends holding it */
            fi
        fi;
next:   skip;
        d_step { k = 0; o = 0; d = 0; a = 0; c = 0; q = 0; t = 0; i = 0; fence_t = 0; ins = 0;
                 ok = 0; md = 0; mc = 0; xa = 0; ksd = 0; mq = 0;
                 j = 0; lk = 0; lo = 0; ld = 0; lc = 0 }
    :: else -> break
    od;
quit: skip
    } unless { !alive[me] };
    /* the process exits (or died): the kernel drops its registry lock */
end_exit: skip;
    d_step { alive[me] = false; printf("P%d exits\n", me) }
}

init {
    byte p = 1;
    atomic {
        do
        :: p <= NP -> alive[p] = true; p++
        :: else -> break
        od;
        run proc(1, OPS1, ROLE1);
        run proc(2, OPS2, ROLE2);
#if NP >= 3
        run proc(3, OPS3, ROLE3);
#endif
    }
}
