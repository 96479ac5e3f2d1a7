/*
 * The process's death watcher: ONE thread per process, made lazily the first
 * time a waiter needs it (and again in a fork child), never per wait. It
 * keeps a pidfd per holder process that a waiter of this process slept
 * behind, in an epoll set, and when one of those processes ends it wakes
 * every sleeper of this process (docs/liveness.md section 4). A wake-up is
 * only a hint: the waiter asks the registry lock before taking anything.
 */
#ifndef SHMLEASE_WATCHER_H
#define SHMLEASE_WATCHER_H

#include "format.h"

#include <stdint.h>

/* One waiting acquire's registration with the watcher: which entry it sleeps
 * on, and which process it watches. Lives in the acquire's frame; linked into
 * the watcher's list from the first watched sleep until
 * shmlease__deathwatch_stop(). */
struct deathwatch {
    struct deathwatch *next, *prev;
    struct shm_entry *e;       /* the entry slept on */
    int      rec;              /* the watcher's record of the process, -1 none */
    int      running;          /* in the watcher's list */
    int      fired;            /* a watched process ended since the last watch (atomic) */
};

static inline void shmlease__deathwatch_init(struct deathwatch *dw)
{
    dw->next = dw->prev = NULL;
    dw->e = NULL;
    dw->rec = -1;
    dw->running = dw->fired = 0;
}

/* Who is watched: process PID, which the caller found registered as the
 * holder (TAG_A, TAG_B name that registration). VERIFY(ARG), called after a
 * pidfd of PID was opened (or when the registration named changes), says
 * whether that registration still lives: 1 yes (so PID is its process and
 * not a newcomer that got a reused PID), 0 dead, -1 cannot tell. */
struct watch_target {
    int32_t  pid;
    uint64_t tag_a, tag_b;
    int    (*verify)(void *arg);
    void    *arg;
};

/* Makes DW watch the process of WT while its thread sleeps on E. 1: watched
 * (the watcher will wake E's sleepers and set dw->fired when it ends); 0:
 * cannot watch (no pidfd, epoll or thread; too many processes watched; the
 * process ended but its registration still looks alive): sleep in short
 * slices; -1: the holder is dead already: do not sleep, look now. */
int  shmlease__deathwatch_watch(struct deathwatch *dw, struct shm_entry *e, const struct watch_target *wt);
/* Leaves the watcher (nothing if DW never joined it). Cheap: no syscall. */
void shmlease__deathwatch_stop(struct deathwatch *dw);

#endif
