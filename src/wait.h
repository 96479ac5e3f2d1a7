/*
 * Waiting for a key: futex sleeps on an entry's wake word, waiter counts so
 * that an uncontended release makes no syscall, wait records for
 * inspection, and the death watch that wakes the sleepers of a key whose
 * holder dies (docs/state-machine.md, "Waiting"; docs/liveness.md).
 */
#ifndef SHMLEASE_WAIT_H
#define SHMLEASE_WAIT_H

#include "table.h"

#include <pthread.h>
#include <stdint.h>

/* A wait this old (ms) gets a death-watch thread: most waits end sooner,
 * with a release, and should not pay for making a thread. */
#define WAIT_WATCH_AFTER_MS 2u

/* One registration of a registry slot: the slot and its generation. A slot
 * reused by a new process is another holder, whatever its number. */
struct holder {
    uint32_t slot;
    uint64_t gen;
};

/* A thread that waits for the holder of a key to die, and then wakes the
 * key's sleepers. One per waiting acquire at most, made lazily. */
struct deathwatch {
    struct shm_entry *e;
    struct holder h;           /* the registration watched */
    int      running;          /* thread made, not yet joined */
    int      fired;            /* its process ended (atomic) */
    int      pidfd, stopfd;
    pthread_t th;
};

static inline void shmlease__deathwatch_init(struct deathwatch *dw)
{
    dw->e = NULL;
    dw->running = dw->fired = 0;
    dw->pidfd = dw->stopfd = -1;
}
/* Stops and joins the watch thread, if any; closes its descriptors. */
void shmlease__deathwatch_stop(struct deathwatch *dw);

/*
 * Sleeps until the entry E may have changed: released, deadline reached, the
 * holder's death, or WAIT_UNTIL (table time). W is the word that made us
 * wait (HELD by a live holder, or GRACE), NOW the table time it was read.
 * YOUNG: the wait is younger than WAIT_WATCH_AFTER_MS (no watch thread yet).
 */
void shmlease__wait_for_change(shmlease_table *t, struct shm_entry *e, uint64_t w, uint64_t now,
                               uint64_t wait_until, struct deathwatch *dw, int young);

/* Wakes E's sleepers (one, or ALL). */
void shmlease__wake(struct shm_entry *e, int all);
/* After a transition of E's state: wakes its sleepers, if it has any. */
void shmlease__wake_waiters(struct shm_entry *e, int all);

#endif
