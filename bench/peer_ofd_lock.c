/*
 * Peer "ofd-lock": an open-file-description byte-range lock
 * (fcntl F_OFD_SETLKW / F_OFD_SETLK) on byte 0 of a file in the bench's
 * temporary folder, each process with its own open file description.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static int ofd_attach(struct pinst *pi) { return peer_file_attach(pi, g_env.ofd_path); }
static int ofd_set(struct pinst *pi, int cmd, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);       /* l_pid must be 0 for OFD locks */
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    return fcntl(pi->fd, cmd, &fl);
}
static int ofd_try(struct pinst *pi)
{
    if (ofd_set(pi, F_OFD_SETLK, F_WRLCK) == 0)
        return 0;
    return (errno == EAGAIN || errno == EACCES) ? 1 : -errno;
}
static int ofd_acquire(struct pinst *pi)
{
    while (ofd_set(pi, F_OFD_SETLKW, F_WRLCK) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}
static int ofd_release(struct pinst *pi) { return ofd_set(pi, F_OFD_SETLK, F_UNLCK) ? -errno : 0; }

const struct peer_ops peer_ofd_lock_ops = {
    "ofd-lock", ofd_attach, ofd_try, ofd_acquire, ofd_release, peer_file_detach
};
