/*
 * Keepalive (keepalive.h, include/shmlease.h "Keepalive").
 *
 * One thread per process (made at the first shmlease_keepalive_start, and
 * again in a fork child that starts one) renews every keepalive of the
 * process. State, all under K.mu:
 *   - K.list: the keepalives still running (status 0) and not being renewed
 *     right now, sorted by due time (CLOCK_MONOTONIC ms); the thread sleeps
 *     on K.cv until the head is due;
 *   - K.current: the keepalive the thread renews right now, outside K.mu
 *     (renew is lock-free CAS work on the segment, and must not hold up
 *     starts and stops of others); its `renewing` flag is set meanwhile;
 *   - K.cb, K.cb_t: the keepalive whose on_lost callback runs now, and the
 *     table it was given (outside K.mu, so that the callback may call the
 *     library, this file included).
 * A keepalive's status moves once from 0 (running) to lost (-ESTALE,
 * -EIDRM: the thread, which then signals) or to ended (-ECANCELED: release,
 * close or stop, which never signal). Whoever moves it takes it off K.list;
 * who ends it while the thread renews it waits for the renewal to finish
 * (K.done), so a renewal that fails because the holder released the lease
 * meanwhile is never reported as a loss: the release hook runs before the
 * release's CAS.
 *
 * A process that is stopped has its thread stopped too: nothing is renewed
 * for it, and after SIGCONT the first renewal finds the deadline passed and
 * reports the loss.
 *
 * fork(): the child has no thread and none of its parent's leases; its
 * copies of the parent's keepalives are dead objects (their fork generation
 * is the parent's): every call on them treats them as lost, and stop frees
 * them, closing only the child's copy of the descriptor.
 */
#include "keepalive.h"
#include "atomics.h"
#include "compiler.h"
#include "names.h"
#include "proc.h"
#include "table.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct shmlease_keepalive {
    struct shmlease_keepalive *next, *prev;   /* K.list, under K.mu */
    shmlease_table *t;         /* NULL once its table was closed */
    shmlease_lease lease;      /* our copy, renewed by the thread (under K.mu) */
    uint64_t entry, claim;     /* the claim it keeps (lease.h: L_ENTRY, L_CLAIM) */
    int (*renew)(shmlease_table *, shmlease_lease *, uint64_t);   /* shmlease_renew */
    uint64_t ttl_ms, interval_ms;
    uint64_t due_ms;           /* next renewal, CLOCK_MONOTONIC ms */
    uint64_t renewals;         /* successful renewals, the one at start included */
    uint64_t started_ms;       /* CLOCK_MONOTONIC ms at start */
    uint64_t ended_ms;         /* when it was found lost or ended, 0 while running */
    void (*on_lost)(shmlease_table *, const shmlease_lease *, int, void *);
    void *arg;
    int status;                /* 0 running; -ESTALE, -EIDRM lost; -ECANCELED ended */
    int listed;                /* on K.list */
    int renewing;              /* K.current and its renewal is in flight */
    int in_callback;           /* its on_lost runs now */
    int free_after_callback;   /* stopped from its own callback: the thread frees it */
    int fd;                    /* eventfd, readable once lost */
    unsigned fork_gen;         /* the process (fork generation) it belongs to */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* the thread sleeps on it (schedule changed, stop) */
    pthread_cond_t done;       /* a renewal or a callback finished */
    int state;                 /* 0 no thread, 1 running */
    int stop;                  /* the destructor asks the thread to return */
    pthread_t th;
    struct shmlease_keepalive *list;
    struct shmlease_keepalive *current;
    struct shmlease_keepalive *cb;
    shmlease_table *cb_t;
    unsigned active;           /* keepalives with status 0 (atomic: the release hook's
                                  fast path reads it without K.mu) */
} K = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int is_keepalive_thread(void)
{
    return K.state == 1 && pthread_equal(pthread_self(), K.th);
}

static int of_this_process(const shmlease_keepalive *k)
{
    return k->fork_gen == ld_relaxed(&shmlease__fork_gen);
}

/* Puts K on the schedule, sorted by due time. Under K.mu. */
static void schedule(shmlease_keepalive *k)
{
    shmlease_keepalive **p = &K.list, *prev = NULL;
    while (*p && (*p)->due_ms <= k->due_ms) {
        prev = *p;
        p = &(*p)->next;
    }
    k->next = *p;
    k->prev = prev;
    if (*p)
        (*p)->prev = k;
    *p = k;
    k->listed = 1;
    if (K.list == k)
        pthread_cond_signal(&K.cv);       /* a new earliest deadline */
}

static void unschedule(shmlease_keepalive *k)
{
    if (!k->listed)
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        K.list = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->next = k->prev = NULL;
    k->listed = 0;
}

/* Moves a running K to STATUS (lost or ended). Under K.mu. */
static void finish(shmlease_keepalive *k, int status)
{
    unschedule(k);
    k->status = status;
    k->ended_ms = mono_ms();
    add_relaxed(&K.active, -1u);
}

/* Was T's segment removed (unlinked, perhaps made again under its name)?
 * Then the lease protects nothing any more: processes that open the table
 * now get another segment. A name we cannot stat for another reason
 * (permissions) is not proof of removal. */
static int segment_gone(const shmlease_table *t)
{
    if (t->remote)
        return 0;                      /* a Redis table: the server decides */
    char path[PATH_LEN];
    struct stat st;
    shmlease__shm_path(path, sizeof path, t->name);
    if (stat(path, &st) != 0)
        return errno == ENOENT;
    return st.st_ino != t->ino || st.st_dev != t->dev;
}

/* The thread found K lost (why): status, descriptor, then the callback,
 * outside K.mu. Under K.mu; returns under it. */
static void report_lost(shmlease_keepalive *k, shmlease_table *t, int why)
{
    finish(k, why);
    uint64_t one = 1;
    ssize_t w = write(k->fd, &one, sizeof one);   /* cannot fail: one write, count 1 */
    (void)w;
    if (!k->on_lost)
        return;
    k->in_callback = 1;
    K.cb = k;
    K.cb_t = t;
    pthread_mutex_unlock(&K.mu);
    k->on_lost(t, &k->lease, why, k->arg);
    pthread_mutex_lock(&K.mu);
    K.cb = NULL;
    K.cb_t = NULL;
    k->in_callback = 0;
    if (k->free_after_callback) {
        close(k->fd);
        free(k);
    }
}

/* Renews K (taken off the schedule, marked renewing) outside K.mu. Under
 * K.mu; returns under it. */
static void renew_one(shmlease_keepalive *k)
{
    shmlease_table *t = k->t;
    shmlease_lease copy = k->lease;
    uint64_t ttl = k->ttl_ms, began = mono_ms();
    pthread_mutex_unlock(&K.mu);
    int rc = segment_gone(t) ? -EIDRM : k->renew(t, &copy, ttl);
    pthread_mutex_lock(&K.mu);
    k->renewing = 0;
    K.current = NULL;
    pthread_cond_broadcast(&K.done);
    if (k->status != 0)
        return;                           /* ended meanwhile (release, close, stop) */
    if (rc == 0) {
        k->lease = copy;
        k->renewals++;
        k->due_ms = began + k->interval_ms;
        schedule(k);
        return;
    }
    /* -ESTALE: expired (a pause past the deadline), broken, taken. Any other
     * code cannot come from a value start() accepted; it is a loss too. */
    report_lost(k, t, rc == -EIDRM ? -EIDRM : -ESTALE);
}

static void *keepalive_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&K.mu);
    while (!K.stop) {
        shmlease_keepalive *k = K.list;
        if (!k) {
            pthread_cond_wait(&K.cv, &K.mu);
            continue;
        }
        uint64_t now = mono_ms();
        if (k->due_ms > now) {
            struct timespec ts = {.tv_sec = (time_t)(k->due_ms / 1000),
                                  .tv_nsec = (long)(k->due_ms % 1000) * 1000000L};
            pthread_cond_timedwait(&K.cv, &K.mu, &ts);
            continue;                     /* the schedule may have changed */
        }
        unschedule(k);
        k->renewing = 1;
        K.current = k;
        renew_one(k);
    }
    pthread_mutex_unlock(&K.mu);
    return NULL;
}

static void atfork_prepare(void) { pthread_mutex_lock(&K.mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&K.mu); }

/* The child: no thread, no keepalive (its copies are the parent's: see
 * of_this_process). The condition variables may hold the parent's thread's
 * wait state: made afresh. */
static void atfork_child(void)
{
    K.state = 0;
    K.stop = 0;
    K.list = K.current = K.cb = NULL;
    K.cb_t = NULL;
    st_relaxed(&K.active, 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&K.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&K.done, NULL);
    pthread_mutex_init(&K.mu, NULL);
}

static void init_once(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&K.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&K.done, NULL);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Starts the thread (signals blocked in it: they are the application's;
 * the default stack size: it runs the callbacks). Under K.mu. 0 or -errno. */
static int thread_start(void)
{
    if (K.state == 1)
        return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&K.th, NULL, keepalive_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return rc == EAGAIN ? -EAGAIN : -ENOMEM;
    K.state = 1;
    return 0;
}

__attribute__((destructor)) static void keepalive_fini(void)
{
    if (K.state != 1)
        return;
    pthread_mutex_lock(&K.mu);
    K.stop = 1;
    pthread_cond_signal(&K.cv);
    pthread_mutex_unlock(&K.mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;                       /* never hang an exit (a callback may block) */
    if (pthread_timedjoin_np(K.th, NULL, &ts) == 0)
        K.state = 0;
}

/* The running keepalive of claim (ENTRY, CLAIM) on T, or NULL. Under K.mu. */
static shmlease_keepalive *find_claim(const shmlease_table *t, uint64_t entry, uint64_t claim)
{
    if (K.current && K.current->status == 0 && K.current->t == t && K.current->entry == entry &&
        K.current->claim == claim)
        return K.current;
    for (shmlease_keepalive *k = K.list; k; k = k->next)
        if (k->t == t && k->entry == entry && k->claim == claim)
            return k;
    return NULL;
}

int shmlease__keepalive_add(const struct keepalive_new *n, shmlease_keepalive **out)
{
    pthread_once(&g_init_once, init_once);
    shmlease_keepalive *k = calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    k->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (k->fd < 0) {
        int e = errno;
        free(k);
        return e == EMFILE || e == ENFILE ? -e : -ENOMEM;
    }
    k->t = n->t;
    k->lease = *n->lease;
    k->entry = n->entry;
    k->claim = n->claim;
    k->renew = n->renew;
    k->ttl_ms = n->ttl_ms;
    k->interval_ms = n->interval_ms;
    k->on_lost = n->on_lost;
    k->arg = n->arg;
    k->renewals = 1;
    k->started_ms = mono_ms();
    k->due_ms = k->started_ms + n->interval_ms;
    k->fork_gen = ld_relaxed(&shmlease__fork_gen);
    pthread_mutex_lock(&K.mu);
    int rc = find_claim(n->t, n->entry, n->claim) ? -EEXIST : thread_start();
    if (rc == 0) {
        add_relaxed(&K.active, 1);
        schedule(k);
    }
    pthread_mutex_unlock(&K.mu);
    if (rc) {
        close(k->fd);
        free(k);
        return rc;
    }
    *out = k;
    return 0;
}

SHM_API int shmlease_keepalive_fd(const shmlease_keepalive *k)
{
    return k ? k->fd : -EINVAL;
}

SHM_API int shmlease_keepalive_status(shmlease_keepalive *k, shmlease_lease *current)
{
    if (!k)
        return -EINVAL;
    if (!of_this_process(k))
        return -ESTALE;                   /* the parent's: a child holds none of its leases */
    pthread_mutex_lock(&K.mu);
    int rc = k->status;
    if (rc == 0 && current)
        *current = k->lease;
    pthread_mutex_unlock(&K.mu);
    return rc;
}

SHM_API int shmlease_keepalive_stats_get(shmlease_keepalive *k, shmlease_keepalive_stats *out)
{
    if (!k || !out)
        return -EINVAL;
    shmlease_keepalive_stats s = {0};
    int mine = of_this_process(k);
    if (mine)
        pthread_mutex_lock(&K.mu);
    s.status = mine ? k->status : -ESTALE;
    s.renewals = k->renewals;
    s.expires_at_ms = k->lease.expires_at_ms;
    s.fencing_token = k->lease.fencing_token;
    s.ttl_ms = k->ttl_ms;
    s.interval_ms = k->interval_ms;
    s.running_ms = (k->ended_ms ? k->ended_ms : mono_ms()) - k->started_ms;
    if (mine)
        pthread_mutex_unlock(&K.mu);
    *out = s;
    return 0;
}

SHM_API int shmlease_keepalive_stop(shmlease_keepalive *k)
{
    if (!k)
        return -EINVAL;
    if (!of_this_process(k)) {
        close(k->fd);                     /* the child's copy only */
        free(k);
        return -ESTALE;
    }
    pthread_mutex_lock(&K.mu);
    int rc = k->status;
    if (rc == 0)
        finish(k, -ECANCELED);
    if (is_keepalive_thread() && k->in_callback) {
        k->free_after_callback = 1;       /* from its own callback: freed after it */
        pthread_mutex_unlock(&K.mu);
        return rc;
    }
    while (k->renewing || k->in_callback)
        pthread_cond_wait(&K.done, &K.mu);
    pthread_mutex_unlock(&K.mu);
    close(k->fd);
    free(k);
    return rc;
}

void shmlease__keepalive_end(shmlease_table *t, uint64_t entry, uint64_t claim)
{
    if (!ld_relaxed(&K.active))
        return;
    pthread_mutex_lock(&K.mu);
    shmlease_keepalive *k = find_claim(t, entry, claim);
    if (k) {
        finish(k, -ECANCELED);
        if (!is_keepalive_thread())
            while (k->renewing)
                pthread_cond_wait(&K.done, &K.mu);
    }
    pthread_mutex_unlock(&K.mu);
}

void shmlease__keepalive_close(shmlease_table *t)
{
    pthread_mutex_lock(&K.mu);
    for (shmlease_keepalive *k = K.list, *next; k; k = next) {
        next = k->next;
        if (k->t == t) {
            finish(k, -ECANCELED);
            k->t = NULL;
        }
    }
    if (K.current && K.current->t == t && K.current->status == 0)
        finish(K.current, -ECANCELED);  /* its renewal finds it ended */
    if (!is_keepalive_thread())
        while ((K.current && K.current->t == t) || K.cb_t == t)
            pthread_cond_wait(&K.done, &K.mu);
    pthread_mutex_unlock(&K.mu);
}
