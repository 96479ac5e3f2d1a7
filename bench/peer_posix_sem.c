/*
 * Peer "posix-sem": a POSIX named semaphore of value 1 (created by
 * peers_setup), sem_wait / sem_post. It has no crash recovery.
 */
#include "bench.h"

#include <errno.h>

static int sem_attach_(struct pinst *pi)
{
    pi->sem = sem_open(g_env.sem_name, 0);
    return pi->sem == SEM_FAILED ? (pi->sem = NULL, -errno) : 0;
}
static void sem_detach_(struct pinst *pi)
{
    if (pi->sem)
        sem_close(pi->sem);
    pi->sem = NULL;
}
static int sem_try(struct pinst *pi)
{
    if (sem_trywait(pi->sem) == 0)
        return 0;
    return errno == EAGAIN ? 1 : -errno;
}
static int sem_acquire(struct pinst *pi)
{
    while (sem_wait(pi->sem) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}
static int sem_release(struct pinst *pi) { return sem_post(pi->sem) ? -errno : 0; }

const struct peer_ops peer_posix_sem_ops = {
    "posix-sem", sem_attach_, sem_try, sem_acquire, sem_release, sem_detach_
};
