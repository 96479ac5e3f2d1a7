/*
 * Cancel tokens (cancel.h).
 *
 * No wake-up is lost: shmlease_cancel() sets the flag, then, under the
 * token's mutex, bumps and wakes the futex word of every listed sleep. A
 * sleeper lists itself under the same mutex, then reads its futex word,
 * then the flag. Either the canceller's critical section comes first (the
 * sleeper then sees the flag, set before it) or the sleeper's does (the
 * canceller then finds it listed, and its bump makes the sleeper's
 * FUTEX_WAIT return at once even if the wake came before the wait).
 *
 * Bumping a table's wake word wakes whoever else sleeps on that key too:
 * they find the state unchanged and sleep again. A cancel is rare; the
 * wake word means "may have changed" and never more.
 */
#include "cancel.h"
#include "atomics.h"
#include "compiler.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <urcu/futex.h>

struct shmlease_cancel_token {
    pthread_mutex_t mu;
    uint32_t fired;                 /* atomic */
    struct cancel_wait *waits;      /* under mu */
};

SHM_API int shmlease_cancel_create(shmlease_cancel_token **out)
{
    if (!out)
        return -EINVAL;
    shmlease_cancel_token *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

SHM_API void shmlease_cancel_destroy(shmlease_cancel_token *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

SHM_API int shmlease_cancel(shmlease_cancel_token *c)
{
    if (!c)
        return -EINVAL;
    st_release(&c->fired, 1);
    pthread_mutex_lock(&c->mu);
    for (struct cancel_wait *w = c->waits; w; w = w->next) {
        if (w->addr) {
            add_release(w->addr, 1);
            futex_async((int32_t *)w->addr, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
        } else {
            uint64_t one = 1;         /* an eventfd: never full at count 1 per cancel */
            ssize_t n = write(w->fd, &one, sizeof one);
            (void)n;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return 0;
}

SHM_API int shmlease_cancel_reset(shmlease_cancel_token *c)
{
    if (!c)
        return -EINVAL;
    st_release(&c->fired, 0);
    return 0;
}

int shmlease__cancel_fired(shmlease_cancel_token *c)
{
    return c && ld_acquire(&c->fired);
}

int shmlease__cancel_enter(shmlease_cancel_token *c, struct cancel_wait *w, uint32_t *addr)
{
    w->fd = -1;
    return shmlease__cancel_enter_fd(c, w, addr, -1);
}

int shmlease__cancel_enter_fd(shmlease_cancel_token *c, struct cancel_wait *w, uint32_t *addr, int fd)
{
    pthread_mutex_lock(&c->mu);
    if (ld_acquire(&c->fired)) {
        pthread_mutex_unlock(&c->mu);
        return 1;
    }
    w->addr = addr;
    w->fd = fd;
    w->prev = NULL;
    w->next = c->waits;
    if (c->waits)
        c->waits->prev = w;
    c->waits = w;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void shmlease__cancel_leave(shmlease_cancel_token *c, struct cancel_wait *w)
{
    pthread_mutex_lock(&c->mu);
    if (w->prev)
        w->prev->next = w->next;
    else
        c->waits = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&c->mu);
}
