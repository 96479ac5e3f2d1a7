/*
 * Cancel tokens (shmlease_cancel in include/shmlease.h): a flag, and the
 * futex words that the acquires given the token sleep on, so that
 * shmlease_cancel() can wake them at once. In-process only.
 */
#ifndef SHMLEASE_CANCEL_H
#define SHMLEASE_CANCEL_H

#include "shmlease.h"

#include <stdint.h>

/* One sleep of an acquire given a token: on the futex word ADDR. */
struct cancel_wait {
    uint32_t *addr;          /* a futex word, or NULL: */
    int fd;                  /* an eventfd written to instead */
    struct cancel_wait *next, *prev;
};

/* Has C (may be NULL) been fired? */
int shmlease__cancel_fired(shmlease_cancel_token *c);
/* Before a sleep on ADDR: lists W in C; returns 1 (W not listed) when C has
 * been fired already. Whoever lists W must read the futex word after this,
 * and call shmlease__cancel_leave() after the sleep. */
int shmlease__cancel_enter(shmlease_cancel_token *c, struct cancel_wait *w, uint32_t *addr);
/* The same for a sleep in poll() that watches eventfd FD (ADDR NULL). */
int shmlease__cancel_enter_fd(shmlease_cancel_token *c, struct cancel_wait *w, uint32_t *addr, int fd);
void shmlease__cancel_leave(shmlease_cancel_token *c, struct cancel_wait *w);

#endif
