/*
 * Leases: the state machine of an entry, and the private fields of a lease
 * value (docs/state-machine.md). acquire.c claims; lease.c renews, releases,
 * checks and breaks.
 *
 * The state (state.h: word and claim count; word.h: the word's bits) moves
 * between RETIRED, FREE, HELD and GRACE by the transitions T1-T14 of
 * docs/state-machine.md, section 3 (insert, acquire, takeovers, refresh,
 * renew, release, release_after, undo, break, sweep, retire, repair).
 *
 * Each transition is ONE 16-byte compare-and-swap of (word, claim) from the
 * exact pair the actor examined, so a crash between any two instructions
 * leaves the state either before or after the transition, never half-way,
 * and an actor whose view is stale fails its CAS. The deadline is inside the
 * word, so nobody can see a new owner next to an old deadline. Transitions
 * that make a new holder (T1-T5) add one to the claim count, so a lease
 * value (word, claim) matches the state only while its claim lasts: once
 * lost, it is lost for ever, whatever happens to the key afterwards.
 *
 * Deadlines. A lease is lost at its deadline even if nobody has changed the
 * state yet. renew, release and release_after check the clock before their
 * CAS (the fast refusal) and again after it: a CAS cannot be timed, so when
 * the clock read after it has reached the old deadline the call reports the
 * lease lost and undoes what it did (a renewed or graced key is set FREE,
 * which is what the expiry made of it). Hence a call that returns 0 took
 * effect strictly before the deadline.
 */
#ifndef SHMLEASE_LEASE_H
#define SHMLEASE_LEASE_H

#include "state.h"
#include "shmlease.h"

/* Private lease fields: the claim the lease names, and whose it is. */
#define L_ENTRY(l)  ((l)->_private[0])
#define L_WORD(l)   ((l)->_private[1])       /* state word of the claim (last renew) */
#define L_CLAIM(l)  ((l)->_private[2])       /* the entry's claim count of this claim */
#define L_REG(l)    ((l)->_private[3])       /* the handle's regword when acquired */
#define L_EPOCH(l)  ((l)->_private[4])       /* table epoch: catches foreign leases */
#define L_GATE(l)   ((l)->_private[5])       /* shared leases: the key's own entry + 1 */

/* A spent lease value (lease.c: released, or found lost by a call) has the
 * word sw_held(0, how): owner 0 matches no held state. */
#define L_SPENT_LOST   UINT64_C(0)
#define L_SPENT_ENDED  UINT64_C(1)      /* released (or release_after) in time */
static inline int lease_ended_in_time(const shmlease_lease *l)
{
    return L_WORD(l) == sw_held(0, L_SPENT_ENDED);
}


#endif
