/*
 * Async acquire (async.h).
 *
 * A request is pending until its worker has stored the acquire's outcome
 * (rc, lease) under the request's mutex and set `done`; then, and only
 * then, the worker writes the eventfd, which stays readable from that
 * moment on (nobody reads it here). A try (wait_ms 0) runs in the caller's
 * thread and is done when shmlease_acquire_async returns.
 *
 * Who writes what:
 *   owner, fd, t, key, meta, o, stop, user,   the starting thread, before
 *   has_worker, has_relay                     any thread of the request exists
 *   done, rc, lease, fetched, cancelled       under mu (done also read lock-free)
 *   relay_word, threads                       atomic add
 *
 * A lease nobody will fetch is released by whoever makes it so: the worker
 * (a cancel came before the acquire returned), shmlease_async_cancel (after)
 * or shmlease_async_free. `fetched` hands the lease to the caller for good.
 *
 * Fork: threads do not cross fork(), so a request belongs to the process
 * that started it (owner). In a child every call but free is -ECHILD, and
 * free only gives back the child's copies of the memory and descriptor; it
 * takes no mutex (a parent's thread may have held one at the fork) and
 * touches no lease (the child holds none of the parent's).
 */
#include "async.h"
#include "abi.h"
#include "atomics.h"
#include "cancel.h"
#include "compiler.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <urcu/futex.h>

struct shmlease_async {
    pid_t owner;
    int fd;
    shmlease_table *t;
    char key[SHMLEASE_KEY_MAX + 1];
    unsigned char meta[SHMLEASE_METADATA_MAX];
    shmlease_acquire_opts o;          /* o.metadata -> meta, o.cancel -> stop */
    shmlease_cancel_token *stop;      /* ours: shmlease_async_cancel fires it */
    shmlease_cancel_token *user;      /* the caller's opts.cancel, or NULL */
    struct cancel_wait user_wait;     /* our listing in the caller's token */
    uint32_t relay_word;              /* bumped: caller's token fired, or done */
    int has_worker, has_relay;
    pthread_t worker, relay;
    unsigned threads;                 /* atomic: running threads (+1 while starting) */

    pthread_mutex_t mu;
    int done, rc, fetched, cancelled;
    shmlease_lease lease;
};

/* Requests of this process that have a thread running. Taken by the start,
 * given back by the request's last thread to end. A fork child has none. */
static unsigned live_requests;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_child(void)
{
    st_relaxed(&live_requests, 0);
}

static void atfork_register(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

static int reserve_slot(void)
{
    unsigned n = ld_relaxed(&live_requests);
    do {
        if (n >= SHMLEASE_ASYNC_MAX)
            return -EAGAIN;
    } while (!__atomic_compare_exchange_n(&live_requests, &n, n + 1, 1, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return 0;
}

static void give_back_slot(void)
{
    __atomic_sub_fetch(&live_requests, 1, __ATOMIC_RELAXED);
}

static int mine(const shmlease_async *a)
{
    return a->owner == getpid();
}

static void wake_relay(shmlease_async *a)
{
    add_release(&a->relay_word, 1);
    futex_async((int32_t *)&a->relay_word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* Stores the acquire's outcome and makes the fd readable. A cancel asked
 * before this point wins over a success: the lease goes back at once. */
static void complete(shmlease_async *a, int rc, shmlease_lease *l)
{
    pthread_mutex_lock(&a->mu);
    if (a->cancelled) {
        if (rc == 0)
            (void)shmlease_release(a->t, l);
        rc = -ECANCELED;
    }
    a->rc = rc;
    if (rc == 0)
        a->lease = *l;
    st_release(&a->done, 1);
    pthread_mutex_unlock(&a->mu);
    if (a->has_relay)
        wake_relay(a);
    uint64_t one = 1;
    while (write(a->fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void thread_over(shmlease_async *a);

static void *worker_main(void *p)
{
    shmlease_async *a = p;
    shmlease_lease l;
    memset(&l, 0, sizeof l);
    complete(a, shmlease_acquire(a->t, a->key, &a->o, &l), &l);
    thread_over(a);
    return NULL;
}

/* Passes a cancel of the caller's token on to ours. Sleeps on relay_word,
 * which the caller's shmlease_cancel bumps (we are listed in its token)
 * and complete() bumps; the word is read before the two flags, so neither
 * wake-up is lost. */
static void *relay_main(void *p)
{
    shmlease_async *a = p;
    for (;;) {
        uint32_t seen = ld_acquire(&a->relay_word);
        if (ld_acquire(&a->done))
            break;
        if (shmlease__cancel_fired(a->user)) {
            shmlease_cancel(a->stop);
            break;
        }
        futex_async((int32_t *)&a->relay_word, FUTEX_WAIT, (int32_t)seen, NULL, NULL, 0);
    }
    shmlease__cancel_leave(a->user, &a->user_wait);
    thread_over(a);
    return NULL;
}

/* The checks shmlease_acquire makes before it looks at the table, made
 * before anything starts: bad input is refused by the call itself. What
 * only the table can tell (a read-only handle, a limit other holders
 * disagree with, ...) ends the request, with that code as its result. */
static int check_input(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                       shmlease_async **out)
{
    if (!t || !o || !out || !key || !key[0])
        return -EINVAL;
    if (strnlen(key, SHMLEASE_KEY_MAX + 1) > SHMLEASE_KEY_MAX)
        return -ENAMETOOLONG;
    if (o->ttl_ms == 0 || o->wait_ms < SHMLEASE_WAIT_FOREVER)
        return -EINVAL;
    if (o->metadata_len > SHMLEASE_METADATA_MAX || (o->metadata_len && !o->metadata))
        return -EINVAL;
    if (!SHMLEASE_RESERVED_ZERO(o) || !shmlease__all_zero(o->reserved_1, sizeof o->reserved_1))
        return -EINVAL;
    if (o->mode > SHMLEASE_SHARED || o->limit > SHMLEASE_LIMIT_MAX ||
        (o->mode == SHMLEASE_EXCLUSIVE && o->limit))
        return -EINVAL;
    if (shmlease__cancel_fired(o->cancel))
        return -ECANCELED;
    return 0;
}

static shmlease_async *request_new(shmlease_table *t, const char *key,
                                   const shmlease_acquire_opts *o, int *rc)
{
    shmlease_async *a = calloc(1, sizeof *a);
    if (!a) {
        *rc = -ENOMEM;
        return NULL;
    }
    a->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->fd < 0) {
        *rc = -errno;
        free(a);
        return NULL;
    }
    *rc = shmlease_cancel_create(&a->stop);
    if (*rc) {
        close(a->fd);
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->owner = getpid();
    a->t = t;
    memcpy(a->key, key, strlen(key) + 1);     /* length checked */
    a->o = *o;
    if (o->metadata_len)
        memcpy(a->meta, o->metadata, o->metadata_len);
    a->o.metadata = o->metadata_len ? a->meta : NULL;
    a->o.cancel = a->stop;
    a->user = o->cancel;
    return a;
}

static void request_delete(shmlease_async *a)
{
    close(a->fd);
    shmlease_cancel_destroy(a->stop);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* One thread of request A (or its starter's hold) is over: the last one
 * gives the request's slot back. A stays valid: free joins the threads. */
static void thread_over(shmlease_async *a)
{
    if (__atomic_sub_fetch(&a->threads, 1, __ATOMIC_ACQ_REL) == 0)
        give_back_slot();
}

static int spawn(shmlease_async *a, pthread_t *th, void *(*fn)(void *), pthread_attr_t *attr)
{
    add_relaxed(&a->threads, 1);
    if (pthread_create(th, attr, fn, a) == 0)
        return 0;
    thread_over(a);
    return -EAGAIN;
}

/* Starts the relay (for a caller's token), then the worker. 0, or a code
 * after which no thread of the request runs. */
static int start_threads(shmlease_async *a, pthread_attr_t *attr)
{
    if (a->user) {
        if (shmlease__cancel_enter(a->user, &a->user_wait, &a->relay_word))
            return -ECANCELED;           /* fired since check_input */
        if (spawn(a, &a->relay, relay_main, attr)) {
            shmlease__cancel_leave(a->user, &a->user_wait);
            return -EAGAIN;
        }
        a->has_relay = 1;
    }
    if (spawn(a, &a->worker, worker_main, attr) == 0) {
        a->has_worker = 1;
        return 0;
    }
    if (a->has_relay) {
        complete(a, -EAGAIN, NULL);      /* ends the relay */
        pthread_join(a->relay, NULL);
        a->has_relay = 0;
    }
    return -EAGAIN;
}

/* Takes a slot, starts the threads with every signal blocked in them
 * (signals are for the program's own threads). */
static int start(shmlease_async *a)
{
    int rc = reserve_slot();
    if (rc)
        return rc;
    st_relaxed(&a->threads, 1);          /* our hold, until the threads run */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SHMLEASE_ASYNC_STACK);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = start_threads(a, &attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    thread_over(a);
    return rc;
}

SHM_API int shmlease_acquire_async(shmlease_table *t, const char *key,
                                   const shmlease_acquire_opts *o, shmlease_async **out)
{
    int rc = check_input(t, key, o, out);
    if (rc)
        return rc;
    pthread_once(&atfork_once, atfork_register);
    shmlease_async *a = request_new(t, key, o, &rc);
    if (!a)
        return rc;
    if (o->wait_ms == 0) {
        /* A try: done before we return, in this thread, with the caller's
         * token (if any) as it is. */
        shmlease_lease l;
        memset(&l, 0, sizeof l);
        a->o.cancel = o->cancel;
        complete(a, shmlease_acquire(t, a->key, &a->o, &l), &l);
        a->user = NULL;
    } else if ((rc = start(a)) != 0) {
        request_delete(a);
        return rc;
    }
    *out = a;
    return 0;
}

SHM_API int shmlease_async_fd(const shmlease_async *a)
{
    if (!a)
        return -EINVAL;
    if (!mine(a))
        return -ECHILD;
    return a->fd;
}

SHM_API int shmlease_async_result(shmlease_async *a, shmlease_lease *out)
{
    if (!a || !out)
        return -EINVAL;
    if (!mine(a))
        return -ECHILD;
    pthread_mutex_lock(&a->mu);
    int rc = a->done ? a->rc : -EINPROGRESS;
    if (a->done && rc == 0) {
        *out = a->lease;
        a->fetched = 1;
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

SHM_API int shmlease_async_cancel(shmlease_async *a)
{
    if (!a)
        return -EINVAL;
    if (!mine(a))
        return -ECHILD;
    pthread_mutex_lock(&a->mu);
    int rc = 0, pending = !a->done;
    if (pending) {
        a->cancelled = 1;
    } else if (a->rc == 0 && !a->fetched) {
        (void)shmlease_release(a->t, &a->lease);   /* nobody has seen it */
        a->rc = -ECANCELED;
    } else {
        rc = -EALREADY;
    }
    pthread_mutex_unlock(&a->mu);
    if (pending)
        shmlease_cancel(a->stop);
    return rc;
}

SHM_API void shmlease_async_free(shmlease_async *a)
{
    if (!a)
        return;
    if (!mine(a)) {
        close(a->fd);                 /* the child's copies only */
        free(a);
        return;
    }
    if (!ld_acquire(&a->done))
        (void)shmlease_async_cancel(a);
    if (a->has_worker)
        pthread_join(a->worker, NULL);
    if (a->has_relay)
        pthread_join(a->relay, NULL);
    if (a->rc == 0 && !a->fetched)
        (void)shmlease_release(a->t, &a->lease);
    request_delete(a);
}
