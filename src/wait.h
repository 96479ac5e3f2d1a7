/*
 * Waiting for a key: futex sleeps on an entry's wake word, waiter counts so
 * that an uncontended release makes no syscall, wait records for
 * inspection, and the use of the process's death watcher (watcher.h) that
 * wakes the sleepers of a key whose holder dies (docs/state-machine.md,
 * "Waiting"; docs/liveness.md).
 */
#ifndef SHMLEASE_WAIT_H
#define SHMLEASE_WAIT_H

#include "table.h"
#include "watcher.h"

#include <stdint.h>

/* Is the handle registered in slot IDX of T alive? 1, 0, -1 cannot tell (the
 * registry lock: liveness.c's shmlease__alive, passed in by the caller, a
 * layer above this one). */
typedef int (*shmlease__alive_fn)(const shmlease_table *t, uint32_t idx);

/*
 * Sleeps until the entry E may have changed: released, deadline reached, the
 * holder's death, or WAIT_UNTIL (table time). W is the word that made us
 * wait (HELD by a live holder, or GRACE), NOW the table time it was read. DW
 * is the acquire's registration with the process's death watcher.
 * Returns 1 when the caller must ask the registry lock whether W's holder
 * lives before sleeping again (the holder could not be watched, the watcher
 * saw a process end, the sleep timed out, or the holder is dead already),
 * 0 when only a release or a change of the state woke us. CANCEL (may be
 * NULL): shmlease_cancel() on it ends the sleep at once (the caller checks
 * the token after every sleep).
 */
int shmlease__wait_for_change(shmlease_table *t, struct shm_entry *e, uint64_t w, uint64_t now,
                              uint64_t wait_until, struct deathwatch *dw, shmlease__alive_fn alive,
                              shmlease_cancel_token *cancel);

/* The same, sleeping on E's wake word while E's state is W, but watching the
 * holder of WATCH (a word of another entry: a shared-holder slot) and
 * waking by WATCH's deadline (none if FREE). The death watcher wakes E. */
int shmlease__wait_for_change_of(shmlease_table *t, struct shm_entry *e, uint64_t w, uint64_t watch,
                                 uint64_t now, uint64_t wait_until, struct deathwatch *dw,
                                 shmlease__alive_fn alive, shmlease_cancel_token *cancel);

/* Wakes E's sleepers (one, or ALL). */
void shmlease__wake(struct shm_entry *e, int all);
/* After a transition of E's state: wakes its sleepers, if it has any. */
void shmlease__wake_waiters(struct shm_entry *e, int all);

#endif
