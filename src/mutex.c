/*
 * Robust process-shared mutexes: the one lock-or-recover path.
 *
 * The two structural mutexes (index, registry) live at fixed offsets in the
 * header for the segment's whole life and are initialised once, before the
 * segment is READY: a robust mutex must never be re-initialised while a
 * process may be attached, or the kernel's robust-list walk at a process's
 * death could write into memory that is no longer a mutex. Robustness is
 * requested unconditionally and checked (PTHREAD_MUTEX_ROBUST is an enum,
 * not a macro, so an #ifdef on it would silently compile it out).
 *
 * When a process dies holding one, the next locker gets EOWNERDEAD and *holds*
 * the mutex. The structure it guards may be half-changed, so the locker runs
 * the structure's repair routine, which rebuilds every derived field from the
 * ground truth (the entries' states, the registry slots) and clears the
 * intent record; only then pthread_mutex_consistent(). If the recoverer
 * itself dies during repair, the mutex is still inconsistent and the next
 * locker repairs again: repair is idempotent. We never unlock without
 * consistent(), so ENOTRECOVERABLE cannot arise from our own code.
 *
 * No wait is unbounded. A caller gives the longest it may wait; a caller
 * that may wait for ever (a WAIT_FOREVER acquire) still never waits for a
 * mutex that nobody alive can hold. The lock is taken in slices; after each
 * slice that timed out, the waiter compares the mutex's owner thread with
 * the holder record (struct shm_lockrec) that every locker writes right
 * after locking and clears right before unlocking:
 *   - the record names the owner thread, and that process is alive, or lives
 *     in another PID namespace, or cannot be examined: a slow or stopped
 *     holder, keep waiting (within the caller's bound);
 *   - no record of the owner thread (a locker between locking and writing
 *     its record, or between clearing it and unlocking, perhaps stopped
 *     right there): the owner thread is looked up in our PID namespace; a
 *     live thread whose process maps this segment is a plausible holder;
 *   - otherwise (a dead process or thread, a thread that does not map the
 *     segment): the kernel would have handed the mutex on with EOWNERDEAD
 *     had its owner died holding it, so the mutex word itself is damaged.
 *     If that lasts CORRUPT_AFTER_MS, the call fails with -EPROTO.
 * Known limit: a locker of another PID namespace stopped in the few
 * instructions between taking the mutex and writing its record looks like
 * a damaged word (its thread id means nothing here).
 */
#include "mutex.h"
#include "clock.h"
#include "fault.h"
#include "proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_SLICE_MS     200u   /* a waiter looks at the holder this often */
#define CORRUPT_AFTER_MS 1000u   /* no plausible holder for this long: damaged */
#define FUTEX_TID_MASK   0x3fffffff

int shmlease__mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc)
        return -rc;
    if ((rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) == 0 &&
        (rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) == 0)
        rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -rc;
}


/* The thread that owns M according to its lock word, 0 if none or unknown. */
static int32_t mutex_owner_tid(const pthread_mutex_t *m)
{
#ifdef __GLIBC__
    return ld_relaxed(&m->__data.__lock) & FUTEX_TID_MASK;
#else
    (void)m;
    return 0;
#endif
}

/* Can the holder of M be a live thread? 1 yes (or cannot tell), 0 no. */
static int holder_plausible(const shmlease_table *t, const pthread_mutex_t *m, const struct shm_lockrec *rec)
{
    int32_t tid = mutex_owner_tid(m);
    int32_t pid = ld_relaxed(&rec->pid);
    int32_t rtid = ld_relaxed(&rec->tid);
    uint64_t start = ld_relaxed(&rec->start_time);
    uint64_t ns = ld_relaxed(&rec->pidns);
    const struct shmlease__self *me = shmlease__self();
#ifdef __GLIBC__
    if (tid == 0)
        return 1;                  /* unlocked meanwhile */
    if (pid <= 0 || rtid != tid) {
        /* No record of this owner: a locker between taking the mutex and
         * writing its record (or between clearing it and unlocking), maybe
         * stopped right there; or a damaged lock word. The owner thread,
         * looked up in our PID namespace, tells them apart: a live thread
         * whose process maps this segment can hold it. */
        return shmlease__proc_maps_inode(tid, (uint64_t)t->ino);
    }
#else
    if (pid <= 0)
        return 1;                  /* without the lock word's owner: cannot tell */
    (void)tid;
    (void)rtid;
#endif
    if (!ns || ns != me->pidns)
        return 1;                  /* another PID namespace: cannot tell */
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    uint64_t now_start = shmlease__proc_start_time(pid);
    if (start && now_start && now_start != start)
        return 0;                  /* the PID was reused */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d", (int)pid, (int)rtid);
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT && now_start)
        return 0;                  /* the process lives, the owner thread does not */
    return 1;
}

static void record_holder(struct shm_lockrec *rec, int32_t tid)
{
    const struct shmlease__self *me = shmlease__self();
    st_relaxed(&rec->tid, tid);
    st_relaxed(&rec->start_time, me->start_time);
    st_relaxed(&rec->pidns, me->pidns);
    st_release(&rec->pid, me->pid);
}

int shmlease__lock_for(shmlease_table *t, pthread_mutex_t *m, struct shm_lockrec *rec,
                       shmlease_repair_fn repair, uint64_t ms)
{
    const uint64_t start = shmlease__mono_ms();
    const int32_t tid = shmlease__proc_tid();
    (void)shmlease__self();        /* read before locking: no file I/O inside */
    uint64_t suspect_since = 0;
    int rc;
    for (;;) {
        uint64_t slice = LOCK_SLICE_MS, spent = shmlease__mono_ms() - start;
        if (ms != UINT64_MAX && ms - (spent < ms ? spent : ms) < slice)
            slice = ms - (spent < ms ? spent : ms);
        /* CLOCK_REALTIME for pthread_mutex_timedlock, which every sanitizer
         * understands. A wall-clock jump only lengthens or shortens one
         * slice: the bound itself is measured on the monotonic clock. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(slice / 1000);
        until.tv_nsec += (long)(slice % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        rc = pthread_mutex_timedlock(m, &until);
        if (rc == 0 || rc == EOWNERDEAD)
            break;
        if (rc == EINTR || rc == EAGAIN)
            continue;
        if (rc != ETIMEDOUT)
            return -EPROTO;        /* EINVAL, ENOTRECOVERABLE, EDEADLK: a damaged mutex */
        uint64_t now = shmlease__mono_ms();
        if (holder_plausible(t, m, rec)) {
            suspect_since = 0;
        } else if (!suspect_since) {
            suspect_since = now;
        } else if (now - suspect_since >= CORRUPT_AFTER_MS) {
            return -EPROTO;
        }
        if (ms != UINT64_MAX && now - start >= ms)
            return -ETIMEDOUT;
    }
    SHMLEASE_FAULT("lock.before_record");
    record_holder(rec, tid);
    if (rc == EOWNERDEAD) {
        SHMLEASE_FAULT("recover.during");
        repair(t);
        stats_inc(t, cold.recoveries);
        pthread_mutex_consistent(m);
    }
    return 0;
}

void shmlease__unlock(pthread_mutex_t *m, struct shm_lockrec *rec)
{
    st_relaxed(&rec->pid, 0);
    st_relaxed(&rec->tid, 0);
    st_relaxed(&rec->start_time, 0);
    st_release(&rec->pidns, 0);
    pthread_mutex_unlock(m);
}
