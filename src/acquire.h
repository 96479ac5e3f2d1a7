/*
 * The steps of an acquire (acquire.c), shared with the acquires of other
 * modes: shared and counted leases, upgrades (shared.c).
 */
#ifndef SHMLEASE_ACQUIRE_H
#define SHMLEASE_ACQUIRE_H

#include "key.h"
#include "lease.h"
#include "watcher.h"

#include <stdint.h>

/* Where an acquire stands on one entry. */
struct target {
    long     ei;               /* entry */
    uint32_t kseq;             /* key_seq under which it holds our key */
    struct lstate s;           /* the state we claimed (valid once claimed) */
};

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
    int      queued;           /* in a fair queue: our place is PLACE (fair.c) */
    struct target place;
    struct deathwatch dw;
    struct keybuf kb;          /* last: acquire zeroes what precedes it */
};


enum step { STEP_CLAIMED = 1, STEP_FOUND, STEP_AGAIN, STEP_RELOOKUP };

/* May the acquire take word W now? Counts why in the statistics when the
 * CAS then succeeds (see claim_entry). 0: no; else TAKE_*. */
enum { TAKE_FREE = 1, TAKE_EXPIRED, TAKE_GRACE_OVER, TAKE_DEAD };

/* How long an acquire may wait for a structural lock (a try: 100 ms). */
uint64_t shmlease__struct_lock_ms(struct acquire *a, uint64_t now);
/* A structural lock that stayed taken: -EBUSY for a try, else -ETIMEDOUT. */
int shmlease__struct_lock_gave_up(struct acquire *a, int rc);
/* Checks the arguments and registers the handle: 0 or a code. */
/* The checks of O that do not depend on the backend: 0, -EINVAL,
 * -ECANCELED (its token fired), -EPERM (read-only T). */
int shmlease__acquire_opts_check(const shmlease_table *t, const shmlease_acquire_opts *o);
int shmlease__acquire_begin(struct acquire *a, shmlease_table *t, const char *key,
                            const shmlease_acquire_opts *o, const shmlease_lease *out);
/* May the acquire take word W at table time NOW? 0: no; else TAKE_*. */
int shmlease__takeable(struct acquire *a, uint64_t w, uint64_t now);
/* Waits for entry E (state W), or gives up: 0 after a sleep, or the code
 * that ends the acquire (-EBUSY, -ETIMEDOUT, -ECANCELED). */
int shmlease__wait_or_give_up(struct acquire *a, struct shm_entry *e, uint64_t w, uint64_t now);
/* The same, sleeping on E but watching WATCH's holder and deadline. */
int shmlease__wait_or_give_up_of(struct acquire *a, struct shm_entry *e, uint64_t w, uint64_t watch,
                                 uint64_t now);
/* Draws the token of claim TG and fills OUT: 0, or -EAGAIN (claim lost). */
#define PLACE_TTL_MS 2000u   /* a fair queue's place lasts this long unrenewed */

/* After a sleep: renews our fair-queue place; 0, or -ENOLINK when it was
 * lost (we were stopped past its deadline): the acquire queues again. */
int shmlease__keep_place(struct acquire *a);
/* A FAIR acquire (fair.c). */
int shmlease__acquire_fair(struct acquire *a, shmlease_lease *out);
int shmlease__finish_claim(struct acquire *a, const struct target *tg, shmlease_lease *out);

/* An EXCLUSIVE acquire, once begun (acquire.c); a SHARED one (shared.c). */
int shmlease__acquire_exclusive(struct acquire *a, shmlease_lease *out);
int shmlease__acquire_shared(struct acquire *a, shmlease_lease *out);
/* Waits for the shared-holder slots of a key whose gate TG we claimed
 * (KEEP: an upgrader's own slot, kept and renewed). */
int shmlease__drain_slots(struct acquire *a, struct target *tg, struct target *keep);
/* Is slot word W live (held or in grace, unexpired, holder not known dead)? */
int shmlease__slot_live(struct acquire *a, uint64_t w, uint64_t now);
/* Gives back a gate claimed but not kept: FREE, aux kept, waiters woken. */
void shmlease__gate_give_back(struct shm_entry *e, struct lstate s);

#endif
