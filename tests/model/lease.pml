/*
 * lease.pml: the lease state protocol of shmlease for one key, checked
 * exhaustively with Spin. tests/model/run builds and runs it; README.md says
 * what is modelled, what is not, and what the runs found.
 *
 * The protocol (the 128-bit state design):
 *   A key's state is {word, claim}, changed only by a 16-byte CAS of both
 *   halves. word = FREE | HELD(owner, deadline) | GRACE(deadline). claim is a
 *   per-key counter that every NEW claim increments (acquire of a FREE key,
 *   takeover of an expired or dead holder's key); renew, release,
 *   release_after, break and sweep keep it. A lease value is (word, claim,
 *   token); it is valid while the state equals (its word, its claim) and
 *   now < its deadline.
 *
 * Switches (spin -D... -a lease.pml):
 *   P1, P2, P3  the property to check (see PROPERTIES below); each run keeps
 *        only its own property's ghost variables, so it stores no more states
 *        than that property needs.
 *   H1=2 thread 1 is another process (handle 2); default: thread 1 is a second
 *        thread of thread 0's process (handle 1).
 *   OLD  the 64-bit design (src/lease.c before the claim counter): no claim;
 *        the word carries a SEQBITS-bit sequence bumped by each new claim;
 *        validity is word equality; no clock read after the CAS of renew and
 *        release. Expected to fail.
 *   NO_POSTCHECK  the new design without the clock read after the CAS of
 *        renew, release and release_after. Expected to fail P2.
 *   REREAD_CLAIM_FIRST  acquire's re-read loads the claim before the word.
 *        Expected to fail P2 and P3.
 *   NT=3 a third thread (handle 2). PHANTOM=n (with H1=1) a third process
 *        making n claims (see operator). Both too big for the CI run.
 *   P2_MASK  the kinds of loss P2 asserts against (LOST_* below; default all).
 *   P2_NOT_ACQUIRE  P2 is not asserted at acquire's return (to see how a
 *        later renew, release or check goes wrong).
 *   HORIZON, TTL, BUDGET0, BUDGET1, SEQBITS  the bounds below.
 *
 * Interleaving: every step of every process is an interleaving point; a
 * d_step is one indivisible instruction (a 64-bit load, a 16-byte CAS, an
 * atomic add, a clock read, a liveness query) plus the local computation
 * after it. The clock is a global integer that a process advances up to
 * HORIZON; deadlines are small integers.
 *
 * The printf calls only run when a trail is replayed (spin -t): they are
 * the counterexample in words.
 */

/* ---- bounds --------------------------------------------------------------- */
#ifndef HORIZON
#define HORIZON 3          /* the clock runs 0..HORIZON */
#endif
#ifndef TTL
#define TTL 2              /* acquire's ttl; renew's is 1 or 2 (shortens or extends) */
#endif
#define GRACE_TTL 1        /* release_after's grace */
#ifndef BUDGET0            /* claiming CASes a thread may make: keeps the claim */
#define BUDGET0 1          /* counter and the fence finite */
#endif
#ifndef BUDGET1
#define BUDGET1 2
#endif
#ifndef BUDGET2
#define BUDGET2 1
#endif
#ifndef SEQBITS
#define SEQBITS 1          /* OLD only: bits of the word's sequence */
#endif

/* ---- the key's state ------------------------------------------------------ */
/* The kinds of src/internal.h (W_FREE, W_HELD, W_GRACE). RETIRED belongs to
 * the key index (table.c) and is not modelled. */
mtype = { FREE, HELD, GRACE };

/* word = {s_kind, s_owner, s_dl, s_seq}; the new design has s_seq == 0, the
 * old one s_claim == 0 (it has no claim half). */
mtype s_kind = FREE;
byte s_owner;              /* registry slot of the holder's handle (HELD) */
byte s_dl;                 /* deadline (HELD, GRACE) */
byte s_seq;                /* OLD: sequence of the last claim (kept by FREE, GRACE) */
byte s_claim;              /* the claim counter */

byte now;                  /* the table clock */
bool alive[3] = true;      /* per handle 1, 2: the registry byte lock, which the
                              kernel drops when the process dies */

#ifdef OLD
#define NEWSEQ(s)   (((s) + 1) % (1 << SEQBITS))
#define NEWCLAIM(c) 0
#else
#define NEWSEQ(s)   0
#define NEWCLAIM(c) ((c) + 1)
#endif

/* ---- threads and their lease values --------------------------------------- */
/* NT threads. Thread 0 is handle 1; thread 1 is handle H1 (1: a second
 * thread of the same process, same registry slot, dying with it; 2: another
 * process); thread 2 (NT == 3) is handle 2.
 * rec[i], i < NT: the lease value thread i holds (its shmlease_lease). It
 *   keeps it after a release or a loss and may call anything on it again.
 * rec[NT + i]: the claim that thread i's acquire has made by CAS and not yet
 *   returned. */
#ifndef NT
#define NT 2
#endif
#ifndef H1
#define H1 1
#endif
#define NREC (2 * NT)
#define HANDLE(i) ((((i) % NT) == 0) -> 1 : ((((i) % NT) == 1) -> H1 : 2))
#define NOBODY 255          /* the operator's record: it holds no lease */

/* Kinds of loss (P2). A lease value is lost at the instant ... */
#define LOST_EXPIRED 1      /* ... the clock reaches its deadline */
#define LOST_TAKEN   2      /* ... someone else changes the state away from it */
#define LOST_STALE   4      /* ... an operation on it returns -ESTALE */
#define LOST_ENDED   8      /* ... its release or release_after takes effect */
#ifndef P2_MASK
#define P2_MASK (LOST_EXPIRED | LOST_TAKEN | LOST_STALE | LOST_ENDED)
#endif

typedef Lease {
    bit  has;               /* the record exists */
    byte dl;                /* its word is HELD(HANDLE(i), dl, seq) */
    byte seq;
    byte claim;
    byte token;             /* P3 only */
    byte lost;              /* P2 only */
};
Lease rec[NREC];

#ifdef P3
byte fence;                 /* hdr->hot.fence */
byte maxret;                /* ghost: the greatest token an acquire returned */
byte lastclaim;             /* ghost: the claim of the last successful acquire */
#endif
byte gi;                    /* loop index inside d_steps; 0 between steps */

/* The state is record I's (word and claim). */
#define STATE_EQ(i) (s_kind == HELD && s_owner == HANDLE(i) && s_dl == rec[i].dl \
                     && s_seq == rec[i].seq && s_claim == rec[i].claim)
/* The word half is record I's. */
#define WORD_EQ(i)  (s_kind == HELD && s_owner == HANDLE(i) && s_dl == rec[i].dl \
                     && s_seq == rec[i].seq)
#define MATCH(k, o, d, s, c) (s_kind == (k) && s_owner == (o) && s_dl == (d) \
                              && s_seq == (s) && s_claim == (c))

/* ---- PROPERTIES ----------------------------------------------------------- */
/* P1 exclusion, two parts.
 * (a) Of the lease values of live threads, at most one is one that
 *     shmlease_check would call valid (state == (word, claim), now <
 *     deadline). Checked in every step that changes the state or a lease
 *     value (the clock and deaths only make leases invalid).
 * (b) A claiming CAS never takes a key that is, at the instant of the CAS,
 *     HELD by a live owner or in GRACE before its deadline (the acquirer
 *     decided on loads and a clock read made earlier). With the claim
 *     counter, (a) alone could not see a live lease being taken over: the
 *     state can only equal one lease value at a time. */
#define VALID(i) (rec[i].has && alive[HANDLE(i)] && STATE_EQ(i) && now < rec[i].dl)
#ifdef P1
#if NT == 3
#define CHECK_P1 assert(!(VALID(0) && VALID(1)) && !(VALID(0) && VALID(2)) \
                        && !(VALID(1) && VALID(2)))
#else
#define CHECK_P1 assert(!(VALID(0) && VALID(1)))
#endif
#define CHECK_P1_CLAIM assert(s_kind == FREE || s_dl <= now || (s_kind == HELD && !alive[s_owner]))
#else
#define CHECK_P1 skip
#define CHECK_P1_CLAIM skip
#endif

/* P2 no resurrection: no operation on a lease value succeeds once the value
 * is lost (LOST_* above). 'bad' is the value's loss bits at the operation's
 * linearization point: the CAS of renew, release and release_after (so a
 * success must have taken effect strictly before the deadline), the load of
 * the word for check and for acquire's re-read. Acquire asserts only
 * LOST_TAKEN: it does not read the clock after its CAS, so it may return a
 * claim that has just expired; every later call on that value is -ESTALE
 * (the value carries the loss on). A held value keeps one bit (lost, for a
 * kind in P2_MASK); a pending claim keeps LOST_TAKEN and LOST_EXPIRED. */
#ifdef P2
#define LOSE(i, why)                                                          \
    if                                                                        \
    :: (i) < NT -> rec[i].lost = rec[i].lost | (((why) & P2_MASK) != 0)       \
    :: else -> rec[i].lost = rec[i].lost | ((why) & (LOST_TAKEN | LOST_EXPIRED)) \
    fi
#define ASSERT_P2     assert(!bad)
#ifndef P2_NOT_ACQUIRE
#define ASSERT_P2_ACQ assert(!(bad & LOST_TAKEN & P2_MASK))
#else
#define ASSERT_P2_ACQ skip
#endif
#else
#define LOSE(i, why)  skip
#define ASSERT_P2     skip
#define ASSERT_P2_ACQ skip
#endif

/* P3 tokens: a successful acquire's token is greater than every token an
 * acquire returned before it (completion = the step that decides success),
 * and (new design) claims are returned in increasing order, so the holders
 * of the key, one after the other, have increasing tokens. */
#ifdef P3
#ifdef OLD
#define ASSERT_P3 assert(rec[P].token > maxret); maxret = rec[P].token
#else
#define ASSERT_P3 assert(rec[P].token > maxret); maxret = rec[P].token; \
                  assert(rec[P].claim > lastclaim); lastclaim = rec[P].claim
#endif
#else
#define ASSERT_P3 skip
#endif

/* A successful CAS by the owner of record SELF (NOBODY: the operator) to
 * state {k, o, d, s, c}. Every other record the old state was is lost
 * (LOST_TAKEN) at this instant. */
#define SET(self, k, o, d, s, c)                                              \
    if                                                                        \
    :: !MATCH(k, o, d, s, c) ->                                               \
        gi = 0;                                                               \
        do                                                                    \
        :: gi < NREC ->                                                       \
            if                                                                \
            :: gi != (self) && rec[gi].has && STATE_EQ(gi) -> LOSE(gi, LOST_TAKEN) \
            :: else -> skip                                                   \
            fi;                                                               \
            gi++                                                              \
        :: else -> gi = 0; break                                              \
        od                                                                    \
    :: else -> skip                                                           \
    fi;                                                                       \
    s_kind = k; s_owner = o; s_dl = d; s_seq = s; s_claim = c;                \
    CHECK_P1

#define SHOW_STATE printf("  state {%e owner %d deadline %d seq %d, claim %d} now %d\n", \
                          s_kind, s_owner, s_dl, s_seq, s_claim, now)

/* A read of the state, when G holds: new design, two 64-bit loads (word,
 * claim) in either order, so a torn pair is possible and a CAS from it fails
 * unless it equals the state; old design, one load. */
#ifdef OLD
#define READ_STATE_IF(g, k, o, d, s, c)                                       \
    if                                                                        \
    :: d_step { g -> k = s_kind; o = s_owner; d = s_dl; s = s_seq; c = 0 }    \
    fi
#else
#define READ_STATE_IF(g, k, o, d, s, c)                                       \
    if                                                                        \
    :: d_step { g -> k = s_kind; o = s_owner; d = s_dl; s = s_seq }; c = s_claim \
    :: d_step { g -> c = s_claim }; d_step { k = s_kind; o = s_owner; d = s_dl; s = s_seq } \
    fi
#endif

#ifndef PHANTOM
#define PHANTOM 0           /* claims of the phantom process 2 (see operator) */
#endif

/* ---- the clock ------------------------------------------------------------ */
active proctype clock()
{
end_tick:
    do
    :: now < HORIZON ->
        d_step {
            now++;
            printf("clock: now %d\n", now);
#ifdef P2
            do
            :: gi < NREC ->
                if
                :: rec[gi].has && rec[gi].dl <= now -> LOSE(gi, LOST_EXPIRED)
                :: else -> skip
                fi;
                gi++
            :: else -> gi = 0; break
            od
#endif
        }
    od
}

/* ---- death ---------------------------------------------------------------- */
/* A process dies at any instant: its handle's registry lock is gone (the
 * liveness oracle says dead) and its threads do nothing more (the 'unless'
 * around each thread's body). Any of the processes may die (handle 2 only
 * where there is one). */
active proctype death()
{
end_death:
    do
    :: d_step { alive[1] -> alive[1] = false; printf("handle 1's process dies\n") }
#if H1 == 2 || NT == 3 || PHANTOM > 0
    :: d_step { alive[2] -> alive[2] = false; printf("handle 2's process dies\n") }
#endif
    od
}

/* ---- the operator --------------------------------------------------------- */
/* shmlease_break (HELD or GRACE, unexpired -> FREE, same claim) and the sweep
 * of a dead registry slot when the slot is reused, shmlease__free_owner_leases
 * (HELD by the dead slot -> FREE, same claim), modelled by their effect: a
 * successful break or sweep is one CAS from the state it read to FREE with
 * the same claim, and a failed one changes nothing. So the operator here may
 * free any HELD or GRACE state at any instant, even one the real break would
 * refuse (expired): a stronger adversary than break and sweep, so what holds
 * against it holds against them. */
active proctype operator()
{
    byte phantom = PHANTOM;
end_op:
    do
    :: d_step {
           (s_kind == HELD || s_kind == GRACE) ->
           printf("operator: break -> FREE\n");
           SET(NOBODY, FREE, 0, 0, s_seq, s_claim);
           SHOW_STATE
       }
#if PHANTOM > 0
    /* -DPHANTOM=n (with H1=1: no thread is handle 2): process 2 is a
     * phantom acquirer making up to n claims, each one atomic step (state,
     * clock and liveness read at the CAS instant), with a lease nobody uses
     * afterwards: a third party that makes new claims and whose death the
     * threads can see (takeover of a dead holder). Five times the states. */
    :: d_step {
           phantom > 0 && alive[2] &&
           (s_kind == FREE || s_dl <= now || (s_kind == HELD && !alive[s_owner])) ->
           phantom--;
           printf("process 2 acquires\n");
           SET(NOBODY, HELD, 2, now + TTL, NEWSEQ(s_seq), NEWCLAIM(s_claim));
           SHOW_STATE;
#ifdef P3
           fence++; maxret = fence; lastclaim = s_claim;
#endif
           skip
       }
#endif
    od
}

/* ---- a lease user --------------------------------------------------------- */
#define OP_ACQ   1          /* shmlease_acquire */
#define OP_RENEW 2          /* shmlease_renew */
#define OP_END   4          /* shmlease_release, shmlease_release_after */
#define OP_CHECK 8          /* shmlease_check */
#define OP_ALL   (OP_ACQ | OP_RENEW | OP_END | OP_CHECK)

#define RESET_READ rk = 0; ro = 0; rd = 0; rs = 0; rc = 0
#define DROP_PENDING                                                          \
    rec[P].has = 0; rec[P].dl = 0; rec[P].seq = 0; rec[P].claim = 0;          \
    rec[P].token = 0; rec[P].lost = 0; rc = 0; ok = 0; bad = 0
/* acquire succeeds here: the claim becomes the thread's lease value. */
#ifdef P3
#define SHOW_ACQUIRED                                                         \
    printf("T%d acquire -> 0: lease {deadline %d seq %d, claim %d}, token %d\n", \
           me, rec[P].dl, rec[P].seq, rec[P].claim, rec[P].token)
#else
#define SHOW_ACQUIRED                                                         \
    printf("T%d acquire -> 0: lease {deadline %d seq %d, claim %d}\n",         \
           me, rec[P].dl, rec[P].seq, rec[P].claim)
#endif
#define ACQUIRED                                                              \
    SHOW_ACQUIRED;                                                            \
    ASSERT_P2_ACQ;                                                            \
    ASSERT_P3;                                                                \
    rec[me].has = 1; rec[me].dl = rec[P].dl; rec[me].seq = rec[P].seq;        \
    rec[me].claim = rec[P].claim; rec[me].token = rec[P].token;               \
    rec[me].lost = ((rec[P].lost & P2_MASK) != 0);                            \
    DROP_PENDING;                                                             \
    CHECK_P1

#define SHOW_RENEW printf("T%d renew: clock %d, before deadline %d; new deadline %d\n", \
                          me, now, rec[me].dl, nd)

/* Each step below is one shared access (see the top); "if :: d_step { guard
 * -> ... }" branches on what that access saw. Locals are zeroed when dead so
 * that states differing only in stale locals are stored once. */
proctype worker(byte me; byte budget; byte ops)
{
    byte h = HANDLE(me);
    byte P = me + NT;               /* our pending claim's record */
    mtype rk;                       /* a read of the state */
    byte ro, rd, rs, rc;
    byte nd;                        /* a new deadline (release: 0, to FREE) */
    byte odl;                       /* renew: the deadline before the CAS */
    bit  ok;
    byte bad;                       /* P2: loss bits at the linearization point */

    {
end_idle:
    do
    /* ---- shmlease_acquire (acquire_inner) -------------------------------- */
    /* Looking again (after a wait, a failed CAS, or a claim lost before the
     * re-read) is modelled as a return to this loop, from which the thread
     * may call acquire again at once, or first do anything else: that only
     * adds behaviours. -EBUSY and -ETIMEDOUT are the same return. */
    :: READ_STATE_IF((ops & OP_ACQ) && budget > 0, rk, ro, rd, rs, rc);   /* e->state */
        if                                  /* shmlease__time_exact, then: */
        :: d_step { (rk == FREE || ((rk == HELD || rk == GRACE) && rd <= now)) ->
                nd = now + TTL }            /* W_FREE, or shmlease__passed: take it */
        :: d_step { rk == HELD && rd > now -> nd = now + TTL };
            if                              /* shmlease__alive(t, owner) */
            :: d_step { !alive[ro] -> skip }                    /* dead holder: take it */
            :: d_step { alive[ro] -> RESET_READ; nd = 0 }; goto end_idle    /* wait, or -EBUSY */
            fi
        :: d_step { rk == GRACE && rd > now -> RESET_READ }; goto end_idle  /* wait, or -EBUSY */
        fi;
        if                                  /* the claiming CAS, deadline_after(tb.lo, ttl) */
        :: d_step { MATCH(rk, ro, rd, rs, rc) ->
                budget--;
                rec[P].has = 1; rec[P].dl = nd; rec[P].seq = NEWSEQ(rs);
                rec[P].claim = NEWCLAIM(rc); rec[P].lost = 0;
                printf("T%d acquire: CAS claims the key\n", me);
                CHECK_P1_CLAIM;
                SET(P, HELD, h, nd, NEWSEQ(rs), NEWCLAIM(rc));
                SHOW_STATE;
                RESET_READ; nd = 0 }
        :: d_step { !MATCH(rk, ro, rd, rs, rc) -> RESET_READ; nd = 0 }; goto end_idle
        fi;
#ifdef P3
        d_step {                            /* acquire_token() */
            fence++; rec[P].token = fence;
            printf("T%d acquire: token %d\n", me, fence) };
#endif
        /* Still ours after the token was drawn? (the re-read of the state) */
#if defined(OLD)
#define REREAD_OK STATE_EQ(P)
        if
        :: d_step { REREAD_OK -> bad = rec[P].lost; ACQUIRED }   /* return 0 */
#elif defined(REREAD_CLAIM_FIRST)
#define REREAD_OK (rc == rec[P].claim && WORD_EQ(P))
        d_step { rc = s_claim; printf("T%d acquire: re-reads claim %d\n", me, rc) };
        if
        :: d_step { REREAD_OK -> bad = rec[P].lost; ACQUIRED }   /* return 0 */
#else
#define REREAD_OK (ok && s_claim == rec[P].claim)
        d_step { ok = WORD_EQ(P); bad = rec[P].lost };
        if
        :: d_step { REREAD_OK -> ACQUIRED }                             /* return 0 */
#endif
        /* lost it meanwhile: start over (the token is wasted: other_tokens) */
        :: d_step { !REREAD_OK -> printf("T%d acquire: claim lost before the re-read\n", me);
                DROP_PENDING }
        fi

    /* ---- shmlease_renew -------------------------------------------------- */
    :: d_step { (ops & OP_RENEW) && rec[me].has && now >= rec[me].dl ->
            LOSE(me, LOST_STALE) }                      /* lease_cas: passed, -ESTALE */
    :: if                                   /* shmlease__time_exact, deadline_after() */
        :: d_step { (ops & OP_RENEW) && rec[me].has && now < rec[me].dl -> nd = now + 1; SHOW_RENEW }
        :: d_step { (ops & OP_RENEW) && rec[me].has && now < rec[me].dl -> nd = now + 2; SHOW_RENEW }
        fi;
        if                                  /* lease_cas: same owner and claim, new deadline */
        :: d_step { STATE_EQ(me) ->
                bad = rec[me].lost; odl = rec[me].dl;
                printf("T%d renew: CAS deadline %d -> %d\n", me, rec[me].dl, nd);
                SET(me, HELD, h, nd, rec[me].seq, rec[me].claim);
                SHOW_STATE;
                rec[me].dl = nd;            /* L_WORD(l) = nw */
                CHECK_P1;
#if defined(OLD) || defined(NO_POSTCHECK)
                printf("T%d renew -> 0\n", me);
                ASSERT_P2; bad = 0; odl = 0;                            /* return 0 */
#endif
                nd = 0 }
        :: d_step { !STATE_EQ(me) -> LOSE(me, LOST_STALE); nd = 0 }; goto end_idle  /* -ESTALE */
        fi;
#if !defined(OLD) && !defined(NO_POSTCHECK)
        if                                  /* the clock again, after the CAS */
        :: d_step { now < odl -> printf("T%d renew -> 0\n", me);
                ASSERT_P2; bad = 0; odl = 0 }                           /* return 0 */
        :: d_step { now >= odl -> bad = 0; odl = 0 };   /* may have straddled the deadline */
            d_step {                        /* give it up: -> FREE, same claim; -ESTALE */
                if
                :: STATE_EQ(me) -> SET(me, FREE, 0, 0, rec[me].seq, rec[me].claim)
                :: else -> skip
                fi;
                printf("T%d renew: past the old deadline, gives the key up -> -ESTALE\n", me);
                LOSE(me, LOST_STALE) }
        fi
#endif

    /* ---- shmlease_release / shmlease_release_after (end_lease) ------------ */
    :: d_step { (ops & OP_END) && rec[me].has && now >= rec[me].dl ->
            LOSE(me, LOST_STALE) }                      /* lease_cas: passed, -ESTALE */
    :: if                                   /* shmlease__time */
        :: d_step { (ops & OP_END) && rec[me].has && now < rec[me].dl -> nd = 0 }   /* release */
        :: d_step { (ops & OP_END) && rec[me].has && now < rec[me].dl ->
                nd = now + GRACE_TTL }                                  /* release_after */
        fi;
        if                                  /* lease_cas: -> FREE or GRACE, same claim */
        :: d_step { STATE_EQ(me) ->
                bad = rec[me].lost;
                printf("T%d release (grace until %d; 0: none): CAS\n", me, nd);
                if
                :: nd == 0 -> SET(me, FREE, 0, 0, rec[me].seq, rec[me].claim)
                :: else -> SET(me, GRACE, 0, nd, rec[me].seq, rec[me].claim)
                fi;
                SHOW_STATE;
                LOSE(me, LOST_ENDED);       /* the value is spent */
#if defined(OLD) || defined(NO_POSTCHECK)
                printf("T%d release -> 0\n", me);
                ASSERT_P2; bad = 0; nd = 0;                             /* return 0 */
#endif
                skip }
        :: d_step { !STATE_EQ(me) -> LOSE(me, LOST_STALE); nd = 0 }; goto end_idle  /* -ESTALE */
        fi;
#if !defined(OLD) && !defined(NO_POSTCHECK)
        if                                  /* the clock again, after the CAS */
        :: d_step { now < rec[me].dl -> printf("T%d release -> 0\n", me);
                ASSERT_P2; bad = 0; nd = 0 }                            /* return 0 */
        :: d_step { now >= rec[me].dl && nd == 0 ->     /* freed at or after the deadline: */
                LOSE(me, LOST_STALE); bad = 0 }         /* -ESTALE (the key is free anyway) */
        :: d_step { now >= rec[me].dl && nd != 0 -> bad = 0 };
            d_step {                        /* release_after: GRACE -> FREE, same claim; -ESTALE */
                if
                :: MATCH(GRACE, 0, nd, rec[me].seq, rec[me].claim) ->
                    SET(me, FREE, 0, 0, rec[me].seq, rec[me].claim)
                :: else -> skip
                fi;
                LOSE(me, LOST_STALE); nd = 0 }
        fi
#endif

    /* ---- shmlease_check --------------------------------------------------- */
#ifdef OLD
    :: d_step { (ops & OP_CHECK) && rec[me].has ->      /* the word */
            ok = STATE_EQ(me); bad = rec[me].lost };
#else
    :: d_step { (ops & OP_CHECK) && rec[me].has -> rc = s_claim };      /* the claim, */
        d_step { ok = rc == rec[me].claim && WORD_EQ(me); bad = rec[me].lost; rc = 0 };  /* the word, */
        d_step { ok = ok && s_claim == rec[me].claim };                 /* the claim again */
#endif
        if                                  /* shmlease__time */
        :: d_step { ok && now < rec[me].dl -> printf("T%d check -> 0\n", me);
                ASSERT_P2; ok = 0; bad = 0 }                            /* return 0 */
        :: d_step { !(ok && now < rec[me].dl) -> LOSE(me, LOST_STALE); ok = 0; bad = 0 }
        fi
    od
    } unless { !alive[h] }                  /* died: the thread does nothing more */
}

#ifndef OPS0
#define OPS0 OP_ALL
#endif
#ifndef OPS1
#define OPS1 OP_ALL
#endif
#ifndef OPS2
#define OPS2 OP_ALL
#endif

init
{
    atomic {
        run worker(0, BUDGET0, OPS0);
        run worker(1, BUDGET1, OPS1);
#if NT == 3
        run worker(2, BUDGET2, OPS2)
#endif
    }
}
