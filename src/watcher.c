/*
 * The process's death watcher (see watcher.h).
 *
 * State, all under W.mu: the records (one per watched process: pid, pidfd,
 * the registration it was last verified for, dead flag, how many sleepers
 * use it), the list of registered sleepers, the epoll set and the thread.
 * Records outlive the waits that made them, up to W.cap of them, so that a
 * waiter that sleeps behind the same processes again (a contended key passed
 * around a pool of workers) makes no syscall to watch them; the least
 * recently used record nobody sleeps behind is closed to make room.
 *
 * The thread sleeps in epoll_wait. When a pidfd becomes readable (its process
 * ended; the kernel dropped the process's locks before that, so the
 * registry lock already says dead), it marks the record dead and, for every
 * registered sleeper, stores `fired` (release) and then bumps the sleeper's
 * wake word and wakes all its sleepers. Every sleeper of the process, not
 * only those behind that process: a sleeper whose key changed holder while
 * it slept may be behind the dead one without knowing (deaths are rare; a
 * spurious wake-up costs one look). The sleeper reads `fired` after its
 * wake-word read (docs/memory-ordering.md MO-10), so it never sleeps through
 * a death whose bump it already read.
 *
 * fork(): the child has no thread and shares the parent's epoll set and
 * pidfds' open files; the child handler closes its copies and forgets all,
 * and the child's first watch starts afresh. A destructor stops the thread
 * (library unload, exit).
 */
#include "watcher.h"
#include "atomics.h"
#include "proc.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <urcu/futex.h>

#define WATCH_MAX   128u       /* most processes watched (pidfds) at once */
#define STOP_TAG    UINT64_MAX /* epoll data of the stop eventfd */

struct rec {
    int32_t  pid;
    int      fd;               /* pidfd, -1: record unused */
    int      dead;             /* the process ended (seen by the thread) */
    unsigned refs;             /* sleepers registered behind it */
    uint32_t seq;              /* bumped at each reuse of the record */
    uint64_t tag_a, tag_b;     /* the registration last verified */
    uint64_t used;             /* LRU tick */
};

static struct {
    pthread_mutex_t mu;
    int      state;            /* 0 not started, 1 running, -1 cannot run (until fork) */
    int      epfd, stopfd;
    unsigned cap;              /* records allowed (descriptor budget) */
    pthread_t th;
    struct rec recs[WATCH_MAX];
    struct deathwatch *list;
    uint64_t tick;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER, .epfd = -1, .stopfd = -1};

static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

/* Bumps E's wake word and wakes all its sleepers (as shmlease__wake). */
static void wake_entry(struct shm_entry *e)
{
    add_release(&e->wake, 1);
    futex_async((int32_t *)&e->wake, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* The record of epoll data D ended: 1 if it was news. */
static int rec_died(uint64_t d)
{
    uint32_t i = (uint32_t)d;
    if (i >= WATCH_MAX || W.recs[i].fd < 0 || W.recs[i].seq != (uint32_t)(d >> 32) || W.recs[i].dead)
        return 0;
    W.recs[i].dead = 1;
    epoll_ctl(W.epfd, EPOLL_CTL_DEL, W.recs[i].fd, NULL);
    return 1;
}

static void *watcher_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct epoll_event ev[16];
        int n = epoll_wait(W.epfd, ev, 16, -1);
        if (n < 0 && errno == EINTR)
            continue;
        pthread_mutex_lock(&W.mu);
        int stop = n < 0, died = 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u64 == STOP_TAG)
                stop = 1;
            else
                died |= rec_died(ev[i].data.u64);
        }
        for (struct deathwatch *d = W.list; died && d; d = d->next) {
            st_release(&d->fired, 1);          /* before the bump (MO-10) */
            wake_entry(d->e);
        }
        if (n < 0)
            W.state = -1;                      /* no more watching: waiters poll */
        pthread_mutex_unlock(&W.mu);
        if (stop)
            return NULL;
    }
}

static void rec_close(struct rec *r)
{
    if (r->fd >= 0) {
        if (!r->dead && W.epfd >= 0)
            epoll_ctl(W.epfd, EPOLL_CTL_DEL, r->fd, NULL);
        close(r->fd);
    }
    r->fd = -1;
    r->refs = 0;
}

static void atfork_prepare(void) { pthread_mutex_lock(&W.mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&W.mu); }

/* The child: no thread; the epoll set and the pidfds' files are the
 * parent's. Close our copies and start afresh at the first watch. */
static void atfork_child(void)
{
    for (unsigned i = 0; i < WATCH_MAX; i++) {
        W.recs[i].dead = 1;                    /* no epoll_ctl on the parent's set */
        rec_close(&W.recs[i]);
    }
    if (W.epfd >= 0)
        close(W.epfd);
    if (W.stopfd >= 0)
        close(W.stopfd);
    W.epfd = W.stopfd = -1;
    W.state = 0;
    W.list = NULL;
    pthread_mutex_unlock(&W.mu);
}

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* How many pidfds the watcher may keep: WATCH_MAX, but at most an eighth of
 * the process's descriptor limit. */
static unsigned watch_cap(void)
{
    struct rlimit rl;
    rlim_t c = WATCH_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 8 < c)
        c = rl.rlim_cur / 8;
    return c < 4 ? 4 : (unsigned)c;
}

/* Makes the epoll set, the stop eventfd and the thread (signals blocked in
 * it: they are the application's). Under W.mu. 1 running, 0 cannot. */
static int watcher_start(void)
{
    if (W.state)
        return W.state > 0;
    pthread_once(&g_atfork_once, atfork_register);
    for (unsigned i = 0; i < WATCH_MAX; i++)
        W.recs[i].fd = -1;
    W.cap = watch_cap();
    W.state = -1;
    W.epfd = epoll_create1(EPOLL_CLOEXEC);
    W.stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STOP_TAG};
    if (W.epfd < 0 || W.stopfd < 0 || epoll_ctl(W.epfd, EPOLL_CTL_ADD, W.stopfd, &ev) != 0)
        return 0;
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0)
        return 0;
    pthread_attr_setstacksize(&a, PTHREAD_STACK_MIN > 65536 ? PTHREAD_STACK_MIN : 65536);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&W.th, &a, watcher_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    if (rc == 0)
        W.state = 1;
    return rc == 0;
}

__attribute__((destructor)) static void watcher_fini(void)
{
    if (W.state <= 0)
        return;
    uint64_t one = 1;
    if (write(W.stopfd, &one, sizeof one) == (ssize_t)sizeof one) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;                        /* never hang an exit */
        if (pthread_timedjoin_np(W.th, NULL, &ts) == 0)
            W.state = 0;
    }
}

/* A record for a new process: a free one, else the least recently used one
 * nobody sleeps behind (closed). -1: all W.cap in use. */
static int rec_alloc(void)
{
    int best = -1;
    for (unsigned i = 0; i < W.cap; i++) {
        struct rec *r = &W.recs[i];
        if (r->fd < 0)
            return (int)i;
        if (!r->refs && (best < 0 || r->dead > W.recs[best].dead ||
                         (r->dead == W.recs[best].dead && r->used < W.recs[best].used)))
            best = (int)i;
    }
    if (best >= 0)
        rec_close(&W.recs[best]);
    return best;
}

/* Opens a pidfd of WT's process and verifies it is the holder's: the record's
 * index, -1 cannot watch, -2 the holder is dead. Under W.mu. */
static int rec_open(const struct watch_target *wt)
{
    int fd = (int)syscall(SYS_pidfd_open, (pid_t)wt->pid, 0);
    int v = wt->verify(wt->arg);       /* after the open: see watcher.h */
    if (fd < 0 || v != 1) {
        if (fd >= 0)
            close(fd);
        return v == 0 ? -2 : -1;
    }
    int i = rec_alloc();
    struct rec *r = i >= 0 ? &W.recs[i] : NULL;
    uint32_t seq = r ? r->seq + 1 : 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)seq << 32) | (uint32_t)i};
    if (!r || epoll_ctl(W.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return -1;
    }
    *r = (struct rec){.pid = wt->pid, .fd = fd, .seq = seq, .tag_a = wt->tag_a, .tag_b = wt->tag_b};
    return i;
}

/* The record watching WT's process: found (verified again if it was verified
 * for another registration) or opened. As rec_open. Under W.mu. */
static int rec_get(const struct deathwatch *dw, const struct watch_target *wt)
{
    int i = dw->rec;
    if (i < 0 || W.recs[i].fd < 0 || W.recs[i].pid != wt->pid) {
        i = -1;
        for (unsigned k = 0; k < W.cap && i < 0; k++)
            if (W.recs[k].fd >= 0 && W.recs[k].pid == wt->pid)
                i = (int)k;
    }
    if (i < 0)
        return rec_open(wt);
    struct rec *r = &W.recs[i];
    if (r->tag_a == wt->tag_a && r->tag_b == wt->tag_b) {
        if (!r->dead)
            return i;
        /* Ended, yet the same registration: dead, or its lock lives on in a
         * child that shares it (then we cannot watch it; poll). */
        return wt->verify(wt->arg) == 0 ? -2 : -1;
    }
    if (r->dead) {                     /* another process got the PID since */
        r->pid = 0;                    /* never found again; evicted when unused */
        return rec_open(wt);
    }
    int v = wt->verify(wt->arg);
    if (v != 1)
        return v == 0 ? -2 : -1;
    r->tag_a = wt->tag_a;
    r->tag_b = wt->tag_b;
    return i;
}

static void node_unlink(struct deathwatch *dw)
{
    if (dw->rec >= 0 && W.recs[dw->rec].refs)
        W.recs[dw->rec].refs--;
    dw->rec = -1;
    if (!dw->running)
        return;
    if (dw->prev)
        dw->prev->next = dw->next;
    else
        W.list = dw->next;
    if (dw->next)
        dw->next->prev = dw->prev;
    dw->next = dw->prev = NULL;
    dw->running = 0;
}

int shmlease__deathwatch_watch(struct deathwatch *dw, struct shm_entry *e, const struct watch_target *wt)
{
    if (wt->pid <= 0)
        return 0;
    pthread_mutex_lock(&W.mu);
    /* Our own process (another handle of it) lives while we wait: no pidfd,
     * but registered, so that other deaths still wake us. */
    int selfp = wt->pid == shmlease__self()->pid;
    int i = !watcher_start() ? -1 : selfp ? -3 : rec_get(dw, wt);
    if (i == -1 || i == -2) {
        node_unlink(dw);
        pthread_mutex_unlock(&W.mu);
        return i == -2 ? -1 : 0;
    }
    if (i != dw->rec) {
        node_unlink(dw);
        if (i >= 0)
            W.recs[i].refs++;
        dw->rec = i >= 0 ? i : -1;
    }
    if (i >= 0)
        W.recs[i].used = ++W.tick;
    dw->e = e;
    st_relaxed(&dw->fired, 0);
    if (!dw->running) {
        dw->next = W.list;
        dw->prev = NULL;
        if (W.list)
            W.list->prev = dw;
        W.list = dw;
        dw->running = 1;
    }
    pthread_mutex_unlock(&W.mu);
    return 1;
}

void shmlease__deathwatch_stop(struct deathwatch *dw)
{
    if (!dw->running && dw->rec < 0)
        return;
    pthread_mutex_lock(&W.mu);
    node_unlink(dw);
    pthread_mutex_unlock(&W.mu);
}
