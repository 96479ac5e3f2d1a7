/*
 * Acquiring a key while staying responsive, for `shmlease run` and the
 * keeper of `shmlease acquire`.
 *
 * shmlease_acquire() may wait for ever, and it retries after a signal. So
 * the acquisition runs in a thread of its own while the calling thread
 * watches a signalfd and the caller's other descriptors (the process a
 * lease is tied to, a pipe whose reader may leave). When one of them fires
 * first, the wait is abandoned: a lease won in the same instant is released
 * (by whichever thread sees the other's decision), and the caller exits
 * without touching the table again (the acquiring thread may still be
 * inside the library: the handle cannot be closed under it, and the kernel
 * lets go of everything at exit).
 *
 * With verbose set, it says on stderr whom it waits for (holder's PID,
 * command name, token), any change of holder while it waits, how long the
 * acquisition took, and when it took over a dead holder's lease.
 */
#ifndef SHMLEASE_LEASE_WAIT_H
#define SHMLEASE_LEASE_WAIT_H

#include <shmlease.h>

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

struct lease_wait {
    /* set by the caller */
    shmlease_table *t;
    const char *table;            /* the table's name, for messages */
    const char *key;
    const char *key_shown;        /* key escaped for messages */
    shmlease_acquire_opts ao;     /* metadata is copied before the thread starts */
    bool verbose;
    /* results */
    shmlease_lease lease;         /* LEASE_WAIT_ACQUIRED */
    int rc;                       /* LEASE_WAIT_FAILED: shmlease_acquire's error */
    int signo;                    /* LEASE_WAIT_SIGNAL: the signal read */
    size_t event;                 /* LEASE_WAIT_EVENT: index in extra[] */
};

enum lease_wait_result {
    LEASE_WAIT_ACQUIRED,          /* w->lease is held */
    LEASE_WAIT_FAILED,            /* w->rc: -EBUSY, -ETIMEDOUT, ... (the thread is joined) */
    LEASE_WAIT_SIGNAL,            /* abandoned: a signal came first; exit soon */
    LEASE_WAIT_EVENT,             /* abandoned: extra[w->event] fired first, or
                                     poll() failed (event LEASE_WAIT_POLL_FAILED,
                                     rc its error); exit soon */
};
#define LEASE_WAIT_POLL_FAILED ((size_t)-1)

/*
 * Acquires w->key as w->ao says. SFD is a signalfd (or -1): any signal read
 * from it but SIGCHLD abandons the wait. EXTRA are more descriptors to
 * watch (their events as given; POLLERR and POLLHUP always count). The
 * caller blocks the signals SFD reads before calling, so that the
 * acquiring thread inherits them blocked.
 */
enum lease_wait_result lease_wait(struct lease_wait *w, int sfd, const struct pollfd *extra,
                                  size_t nextra);

/* "held by pid 123 (sleep), alive, token 5, 27.1s left" or "in a grace
 * period (token 5, 59.0s left)": what inspection says of KEY, on stderr as
 * "PREFIX: SHOWN WHAT" (with " after N.NNNs" when waited_ms >= 0). */
void lease_wait_describe_holder(shmlease_table *t, const char *key, const char *shown,
                                long long waited_ms);

/* Dies of SIG as if it had not been caught (the parent sees a death by
 * signal: a shell's 128+SIG), after restoring its default action. */
_Noreturn void die_by_signal(int sig);

#endif
