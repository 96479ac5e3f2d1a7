/*
 * Peer "flock": flock(2) LOCK_EX / LOCK_UN on a file in the bench's temporary
 * folder, each process with its own open file description.
 */
#include "bench.h"

#include <errno.h>
#include <sys/file.h>

static int fl_attach(struct pinst *pi) { return peer_file_attach(pi, g_env.flock_path); }
static int fl_try(struct pinst *pi)
{
    if (flock(pi->fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    return errno == EWOULDBLOCK ? 1 : -errno;
}
static int fl_acquire(struct pinst *pi)
{
    while (flock(pi->fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}
static int fl_release(struct pinst *pi) { return flock(pi->fd, LOCK_UN) ? -errno : 0; }

const struct peer_ops peer_flock_ops = {
    "flock", fl_attach, fl_try, fl_acquire, fl_release, peer_file_detach
};
