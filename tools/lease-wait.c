#include "lease-wait.h"

#include "proctree.h"
#include "tool-util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define PROG "shmlease"

/* What the two threads share. Heap-allocated: when the wait is abandoned
 * the acquiring thread outlives lease_wait(), so it must own what it uses. */
struct lw_shared {
    pthread_mutex_t m;
    shmlease_table *t;
    char key[SHMLEASE_KEY_MAX + 2];          /* one byte more: a long key stays long */
    unsigned char metadata[SHMLEASE_METADATA_MAX];
    shmlease_acquire_opts ao;
    int efd;                                 /* eventfd: written once the acquire returned */
    /* under m */
    bool done;                               /* the acquire returned rc (and lease) */
    bool abandoned;                          /* the waiting thread gave up */
    int rc;
    shmlease_lease lease;
};

static void *acquire_main(void *arg)
{
    struct lw_shared *s = arg;
    shmlease_lease l;
    int rc = shmlease_acquire(s->t, s->key, &s->ao, &l);
    pthread_mutex_lock(&s->m);
    s->done = true;
    s->rc = rc;
    s->lease = l;
    bool give_back = s->abandoned && rc == 0;
    pthread_mutex_unlock(&s->m);
    if (give_back)
        shmlease_release(s->t, &l);          /* nobody wants it any more */
    uint64_t one = 1;
    ssize_t wr = write(s->efd, &one, sizeof(one));
    (void)wr;
    return NULL;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The holder as the wait last saw it, for the verbose messages. */
struct seen_holder {
    bool known;                   /* the key was held (or in grace) when last looked at */
    shmlease_info in;
    char comm[PROC_COMM_MAX];     /* "" when unreadable */
};

/* The holder's command name, if its PID is ours to read and is still the
 * holder's process (same start time). */
static void holder_comm(const shmlease_info *in, char comm[PROC_COMM_MAX])
{
    struct proc_info p;
    comm[0] = '\0';
    if (in->holder_pid <= 0 || in->holder_other_pidns || in->in_grace)
        return;
    if (proc_read(in->holder_pid, &p) == 0 && p.start == in->holder_start_time)
        memcpy(comm, p.comm, sizeof(p.comm));
}

/* "held by pid 123 (sleep), alive, token 5, 27.1s left" into buf. */
static void holder_text(const shmlease_info *in, const char *comm, char *buf, size_t size)
{
    char left[32];
    tool_format_left(in->remaining_ms > 0 ? in->remaining_ms : 0, left, sizeof(left));
    if (in->in_grace || in->holder_pid == 0) {
        snprintf(buf, size, "in a grace period (token %llu, %s left)",
                 (unsigned long long)in->fencing_token, left);
        return;
    }
    char shown[4 * PROC_COMM_MAX + 8] = "";
    if (comm[0] != '\0') {
        char esc[4 * PROC_COMM_MAX + 1];
        tool_escape_text(comm, strlen(comm), esc);
        snprintf(shown, sizeof(shown), " (%s)", esc);
    }
    /* A shared key is described by one of its holders. */
    char mode[96] = "";
    if (in->mode == SHMLEASE_SHARED && in->limit != 0 && in->limit < SHMLEASE_LIMIT_MAX)
        snprintf(mode, sizeof(mode), " in shared mode (%u of at most %u holders), one",
                 (unsigned)in->holders, (unsigned)in->limit);
    else if (in->mode == SHMLEASE_SHARED)
        snprintf(mode, sizeof(mode), " in shared mode (%u holder%s), one", (unsigned)in->holders,
                 in->holders == 1 ? "" : "s");
    snprintf(buf, size, "held%s by pid %ld%s%s, %s, token %llu, %s left", mode,
             (long)in->holder_pid, shown, in->holder_other_pidns ? " of another PID namespace" : "",
             in->holder_alive > 0 ? "alive" : in->holder_alive == 0 ? "dead" : "liveness unknown",
             (unsigned long long)in->fencing_token, left);
}

static bool look(shmlease_table *t, const char *key, struct seen_holder *h)
{
    h->known = shmlease_inspect(t, key, &h->in) == 0;
    if (h->known)
        holder_comm(&h->in, h->comm);
    return h->known;
}

void lease_wait_describe_holder(shmlease_table *t, const char *key, const char *shown,
                                long long waited_ms)
{
    struct seen_holder h;
    char after[48] = "";
    if (waited_ms >= 0)
        snprintf(after, sizeof(after), " after %lld.%03llds", waited_ms / 1000,
                 waited_ms % 1000);
    if (!look(t, key, &h)) {
        fprintf(stderr, PROG ": %s is held%s\n", shown, after);
        return;
    }
    char text[512];
    holder_text(&h.in, h.comm, text, sizeof(text));
    fprintf(stderr, PROG ": %s is %s%s\n", shown, text, after);
}

/* Says how the lease was won: how long it took, and from whom when the
 * previous holder had died or its lease had run out. */
static void say_acquired(const struct lease_wait *w, const struct seen_holder *last,
                         const shmlease_stats *before, long long waited_ms, bool waited)
{
    char how[64] = "at once";
    if (waited)
        snprintf(how, sizeof(how), "after waiting %lld.%03llds", waited_ms / 1000,
                 waited_ms % 1000);
    char mode[48] = "";
    if (w->ao.mode == SHMLEASE_SHARED && w->ao.limit != 0)
        snprintf(mode, sizeof(mode), " (shared, limit %u)", (unsigned)w->ao.limit);
    else if (w->ao.mode == SHMLEASE_SHARED)
        snprintf(mode, sizeof(mode), " (shared)");
    fprintf(stderr, PROG ": acquired %s%s on table %s, token %llu, ttl %llums, %s\n",
            w->key_shown, mode, w->table, (unsigned long long)w->lease.fencing_token,
            (unsigned long long)w->ao.ttl_ms, how);
    shmlease_stats after;
    if (!last->known || last->in.in_grace || last->in.holder_pid == 0 ||
        shmlease_stats_get(w->t, &after) != 0)
        return;
    char who[4 * PROC_COMM_MAX + 96], esc[4 * PROC_COMM_MAX + 1];
    tool_escape_text(last->comm, strlen(last->comm), esc);
    snprintf(who, sizeof(who), "pid %ld%s%s%s%s, token %llu", (long)last->in.holder_pid,
             esc[0] ? " (" : "", esc, esc[0] ? ")" : "",
             last->in.holder_other_pidns ? " of another PID namespace" : "",
             (unsigned long long)last->in.fencing_token);
    /* The table's counters are shared by all its users: a count that grew
     * is ours only if the holder we saw is indeed gone (or was expired). */
    bool gone = last->in.holder_other_pidns
                    ? last->in.holder_alive == 0
                    : !proc_alive(last->in.holder_pid, last->in.holder_start_time);
    if (after.reclaimed_dead > before->reclaimed_dead && gone)
        fprintf(stderr, PROG ": took %s over from %s, which died without releasing it\n",
                w->key_shown, who);
    else if (after.expirations > before->expirations && !gone)
        fprintf(stderr, PROG ": took %s over from %s, whose lease ran out (it did not renew "
                        "in time: stopped, or too slow)\n", w->key_shown, who);
}

static void say_waiting(const struct lease_wait *w, const struct seen_holder *h, bool again)
{
    char text[512];
    holder_text(&h->in, h->comm, text, sizeof(text));
    fprintf(stderr, PROG ": %s %s on table %s: %s%s\n", again ? "still waiting for" : "waiting for",
            w->key_shown, w->table, again ? "now " : "", text);
}

/* Gives up the wait: a lease won meanwhile is released by this thread (if
 * the acquire has returned) or by the acquiring one (when it does). */
static void abandon(struct lw_shared *s)
{
    pthread_mutex_lock(&s->m);
    s->abandoned = true;
    bool won = s->done && s->rc == 0;
    shmlease_lease l = s->lease;
    pthread_mutex_unlock(&s->m);
    if (won)
        shmlease_release(s->t, &l);
}

static const char *signal_name(int sig, char buf[16])
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev != NULL)
        snprintf(buf, 16, "SIG%s", abbrev);
    else
        snprintf(buf, 16, "signal %d", sig);
    return buf;
}

/* Reads SFD; the first signal that counts (not SIGCHLD), or 0. */
static int read_signal(int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo != SIGCHLD)
            return (int)si.ssi_signo;
    return 0;
}

enum lease_wait_result lease_wait(struct lease_wait *w, int sfd, const struct pollfd *extra,
                                  size_t nextra)
{
    struct lw_shared *s = calloc(1, sizeof(*s));
    struct pollfd *pfd = calloc(nextra + 2, sizeof(*pfd));
    size_t klen = strnlen(w->key, SHMLEASE_KEY_MAX + 1);
    if (s == NULL || pfd == NULL || w->ao.metadata_len > sizeof(s->metadata)) {
        free(s);
        free(pfd);
        w->rc = -ENOMEM;
        return LEASE_WAIT_FAILED;
    }
    pthread_mutex_init(&s->m, NULL);
    s->t = w->t;
    memcpy(s->key, w->key, klen);                /* a key too long stays too long */
    s->ao = w->ao;
    if (w->ao.metadata_len > 0) {
        memcpy(s->metadata, w->ao.metadata, w->ao.metadata_len);
        s->ao.metadata = s->metadata;
    }
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    /* What the key looks like before we ask: whom we will wait for. */
    shmlease_stats before;
    memset(&before, 0, sizeof(before));
    struct seen_holder last;
    memset(&last, 0, sizeof(last));
    if (w->verbose) {
        shmlease_stats_get(w->t, &before);
        if (look(w->t, w->key, &last) && w->ao.wait_ms != 0)
            say_waiting(w, &last, false);
    }
    long long t0 = mono_ms();

    pthread_t th;
    memset(&th, 0, sizeof(th));
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  /* the thread takes no signal */
    int prc = s->efd < 0 ? (errno ? errno : EMFILE) : pthread_create(&th, NULL, acquire_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        if (s->efd >= 0)
            close(s->efd);
        free(s);
        free(pfd);
        w->rc = -prc;
        return LEASE_WAIT_FAILED;
    }

    pfd[0] = (struct pollfd){ .fd = s->efd, .events = POLLIN };
    pfd[1] = (struct pollfd){ .fd = sfd, .events = POLLIN };
    for (size_t i = 0; i < nextra; i++)
        pfd[i + 2] = extra[i];
    enum lease_wait_result res;
    for (;;) {
        int n = poll(pfd, nextra + 2, w->verbose ? 1000 : -1);
        if (n < 0 && errno != EINTR) {
            w->rc = -errno;
            w->event = LEASE_WAIT_POLL_FAILED;
            abandon(s);                  /* s stays: the thread still uses it */
            free(pfd);
            return LEASE_WAIT_EVENT;
        }
        if (pfd[0].revents != 0) {
            res = LEASE_WAIT_ACQUIRED;
            break;
        }
        int sig = sfd >= 0 && pfd[1].revents != 0 ? read_signal(sfd) : 0;
        if (sig != 0) {
            abandon(s);
            free(pfd);
            w->signo = sig;
            if (w->verbose) {
                char name[16];
                fprintf(stderr, PROG ": %s while waiting for %s: giving up, holding nothing\n",
                        signal_name(sig, name), w->key_shown);
            }
            return LEASE_WAIT_SIGNAL;
        }
        for (size_t i = 0; i < nextra; i++) {
            if (pfd[i + 2].revents != 0) {
                abandon(s);
                free(pfd);
                w->event = i;
                return LEASE_WAIT_EVENT;
            }
        }
        if (n == 0 && w->verbose) {
            /* A new holder (another waiter was faster, or the key was
             * released and taken again) is worth a line; the same one is not. */
            struct seen_holder now;
            if (look(w->t, w->key, &now) &&
                (!last.known || now.in.fencing_token != last.in.fencing_token ||
                 now.in.holder_alive != last.in.holder_alive))
                say_waiting(w, &now, last.known);
            if (now.known)
                last = now;
        }
    }
    pthread_join(th, NULL);
    close(s->efd);
    long long waited = mono_ms() - t0;
    w->rc = s->rc;
    w->lease = s->lease;
    pthread_mutex_destroy(&s->m);
    free(s);
    free(pfd);
    if (w->rc != 0) {
        if (w->verbose && (w->rc == -EBUSY || w->rc == -ETIMEDOUT))
            lease_wait_describe_holder(w->t, w->key, w->key_shown,
                                       w->ao.wait_ms != 0 ? waited : -1);
        return LEASE_WAIT_FAILED;
    }
    if (w->verbose)
        say_acquired(w, &last, &before, waited, last.known && w->ao.wait_ms != 0);
    return res;
}

_Noreturn void die_by_signal(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, NULL);
    fflush(NULL);
    raise(sig);                        /* pending while blocked in this thread */
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    _exit(128 + sig);                  /* a signal whose default is to go on */
}
