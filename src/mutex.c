/*
 * Robust process-shared mutexes: the one lock-or-recover path.
 *
 * The two structural mutexes (index, registry) live at fixed offsets in the
 * header for the segment's whole life and are initialised once, before the
 * segment is READY (PITFALLS 1). Robustness is requested unconditionally and
 * checked (PITFALLS 3: PTHREAD_MUTEX_ROBUST is an enum, not a macro).
 *
 * When a process dies holding one, the next locker gets EOWNERDEAD and *holds*
 * the mutex (PITFALLS 2). The structure it guards may be half-changed, so the
 * locker runs the structure's repair routine, which rebuilds every derived
 * field from the ground truth (the entries' state words, the registry slots)
 * and clears the intent record; only then pthread_mutex_consistent(). If the
 * recoverer itself dies during repair, the mutex is still inconsistent and the
 * next locker repairs again: repair is idempotent. We never unlock without
 * consistent(), so ENOTRECOVERABLE cannot arise from our own code.
 */
#include "internal.h"

#include <errno.h>
#include <time.h>

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

int shmlease__lock(shmlease_table *t, pthread_mutex_t *m, shmlease_repair_fn repair)
{
    return shmlease__lock_for(t, m, repair, UINT64_MAX);
}

/* Waits at most MS milliseconds (UINT64_MAX: forever): a process stopped
 * while it holds the lock must not hold up a caller with a deadline. */
int shmlease__lock_for(shmlease_table *t, pthread_mutex_t *m, shmlease_repair_fn repair, uint64_t ms)
{
    int rc;
    struct timespec until;
    if (ms != UINT64_MAX) {
        /* CLOCK_REALTIME for pthread_mutex_timedlock, which every sanitizer
         * understands (gcc 12's TSan does not intercept clocklock). This only
         * bounds the rare wait for a stopped lock holder: a wall-clock jump
         * lengthens or shortens that bound, nothing else. */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(ms / 1000);
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    do {
        rc = ms == UINT64_MAX ? pthread_mutex_lock(m) : pthread_mutex_timedlock(m, &until);
    } while (rc == EINTR || rc == EAGAIN);
    if (rc == ETIMEDOUT)
        return -ETIMEDOUT;
    if (rc == 0)
        return 0;
    if (rc == EOWNERDEAD) {
        SHMLEASE_FAULT("recover.during");
        repair(t);
        STAT_ADD(t, cold, recoveries);
        pthread_mutex_consistent(m);
        return 0;
    }
    return rc == ENOTRECOVERABLE ? -ENOTRECOVERABLE : -rc;
}

void shmlease__unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
}
