/* The lock file of a table (see lockfile.h). */
#include "lockfile.h"
#include "clock.h"
#include "fault.h"
#include "handles.h"
#include "names.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

/* The lock file's mode for a segment of mode SEGMENT_MODE: rw- for each class
 * (user, group, other) that may write the segment, --- for the others (0644
 * -> 0600, 0664 -> 0660, 0666 -> 0666). */
mode_t shmlease__lk_mode(mode_t segment_mode)
{
    mode_t m = 0;
    if (segment_mode & S_IWUSR)
        m |= S_IRUSR | S_IWUSR;
    if (segment_mode & S_IWGRP)
        m |= S_IRGRP | S_IWGRP;
    if (segment_mode & S_IWOTH)
        m |= S_IROTH | S_IWOTH;
    return m;
}

int shmlease__ofd_lock(int fd, short type, off_t off, int wait)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
    for (;;) {
        if (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return -errno;
    }
}

/* Opens the lock file of table NAME again by name, if it is still the file
 * INO/DEV (it may have been unlinked and replaced). The descriptor, or a
 * negative code. */
int shmlease__lk_open_same(const char *name, int readonly, ino_t ino, dev_t dev)
{
    char path[PATH_LEN];
    shmlease__lk_name(path, sizeof path, name);
    int fd = shm_open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_ino != ino || st.st_dev != dev || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EAGAIN;                /* unlinked and replaced meanwhile */
    }
    return fd;
}

/* Polls for the init lock on FD until DEADLINE (monotonic ms): 0, -ETIMEDOUT
 * (an initialiser that is stopped) or another error. */
int shmlease__lk_init_lock_until(int fd, uint64_t deadline)
{
    for (unsigned naps = 0;; naps++) {
        int rc = shmlease__ofd_lock(fd, F_WRLCK, SHM_LK_INIT_BYTE, 0);
        if (rc == 0)
            return 0;
        if (rc != -EAGAIN && rc != -EACCES)
            return rc;
        if (shmlease__mono_ms() >= deadline)
            return -ETIMEDOUT;
        shmlease__sleep_ms(naps < 10 ? 1 : 2);
    }
}

/* Is FD (the lock file) still the file linked as the lock file of NAME? */
int shmlease__lk_linked(int fd, const char *name, struct stat *st)
{
    char path[PATH_LEN];
    shmlease__lk_path(path, sizeof path, name);
    struct stat by_name;
    if (fstat(fd, st) != 0 || st->st_nlink == 0)
        return 0;
    return lstat(path, &by_name) == 0 && by_name.st_ino == st->st_ino && by_name.st_dev == st->st_dev;
}

/* Removes the lock file of NAME if it is still the file LK. Only with the
 * init lock held on it, and only when no segment can name it. */
void shmlease__lk_unlink(const char *name, const struct stat *lk)
{
    char path[PATH_LEN];
    shmlease__lk_path(path, sizeof path, name);
    struct stat st;
    if (lstat(path, &st) == 0 && st.st_ino == lk->st_ino && st.st_dev == lk->st_dev) {
        shmlease__lk_name(path, sizeof path, name);
        shm_unlink(path);
    }
}

/* Created for the caller alone (the umask can only narrow that), then given
 * its group, then its mode: until the last step nobody else can open it, so
 * nobody holds a descriptor made under a group or mode it was not meant to
 * have. */
int shmlease__shm_create(const char *path, mode_t mode, gid_t gid)
{
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode & S_IRWXU);
    if (fd < 0)
        return -errno;
    int rc = gid != SHM_NO_GID && fchown(fd, (uid_t)-1, gid) != 0 ? -errno : 0;
    SHMLEASE_FAULT("create.before_mode");
    if (rc == 0 && fchmod(fd, mode) != 0)
        rc = -errno;
    if (rc) {
        close(fd);
        shm_unlink(path);
        return rc;
    }
    return fd;
}

/* Opens T's lock file into t->fd, under the handle-list lock: the existing
 * one first (the common case: one open(), no failing O_EXCL), else, if
 * CREATE, a new one of mode MODE and group GID (SHM_NO_GID: the caller's).
 * 0, -ENOENT (none, and !CREATE), or another negative code. *CREATED (if
 * not NULL): this call made it. */
int shmlease__lk_open(shmlease_table *t, mode_t mode, int create, gid_t gid, int *created)
{
    char path[PATH_LEN];
    shmlease__lk_name(path, sizeof path, t->name);
    int fd = -EAGAIN;
    if (created)
        *created = 0;
    shmlease__handles_lock();
    for (int tries = 0; tries < OPEN_ROUNDS; tries++) {
        /* O_NONBLOCK: a FIFO squatting the name must not block us. */
        fd = shm_open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
        if (fd < 0)
            fd = (errno == EISDIR || errno == ENXIO || errno == ELOOP) ? -EPROTO : -errno;
        if (fd == -ENOENT && create) {
            fd = shmlease__shm_create(path, mode, gid);
            if (fd >= 0 && created)
                *created = 1;
        }
        if (fd != -EEXIST)             /* EEXIST: made meanwhile, go round */
            break;
        fd = -EAGAIN;
    }
    if (fd >= 0)
        t->fd = fd;
    shmlease__handles_unlock();
    return fd >= 0 ? 0 : fd;
}

/* The creation record: the lock file's size is 1 while a creator builds the
 * segment (set before the segment is created, cleared once it is READY), 0
 * otherwise. Only the table's writers can open the lock file, and only a
 * holder of the init lock changes the size. */
int shmlease__lk_set_building(int fd, int building)
{
    return ftruncate(fd, building ? 1 : 0) == 0 ? 0 : -errno;
}

/* May LK (an existing lock file) serve the segment S? Its owner must be
 * someone who may write the segment (else it was planted by a reader, who
 * kept a descriptor to it: -EACCES, like a squatted table name), and it must
 * not be open to anyone who may not (a mode we own and can narrow is
 * narrowed). ME: the caller's effective uid. */
int shmlease__lk_trusted(int fd, const struct stat *lk, const struct stat *s, uid_t me)
{
    if (!S_ISREG(lk->st_mode))
        return -EPROTO;
    int writer = lk->st_uid == me || lk->st_uid == s->st_uid || lk->st_uid == 0 ||
                 (s->st_mode & S_IWOTH) || ((s->st_mode & S_IWGRP) && lk->st_gid == s->st_gid);
    if (!writer)
        return -EACCES;
    mode_t want = shmlease__lk_mode(s->st_mode);
    if ((lk->st_mode & 07777) & ~want) {
        if (lk->st_uid != me || fchmod(fd, want) != 0)
            return -EACCES;
    }
    return 0;
}

/* A read-only handle asks liveness of the lock file if it may open it (read
 * only), and only if it is the one the header names; else it reads
 * /proc/locks (liveness.c). */
void shmlease__lk_open_readonly(shmlease_table *t)
{
    shmlease__handles_lock();
    int fd = shmlease__lk_open_same(t->name, 1, t->lk_ino, t->lk_dev);
    if (fd >= 0)
        t->fd = fd;
    shmlease__handles_unlock();
}

/* A handle whose lock-file descriptor was lost in a fork child (no /proc):
 * find the lock file again by name, if it is still the same file. 0 or
 * -EBADF. */
int shmlease__reopen_fd(shmlease_table *t)
{
    shmlease__handles_lock();
    int fd = shmlease__lk_open_same(t->name, t->readonly, t->lk_ino, t->lk_dev);
    if (fd >= 0)
        t->fd = fd;
    shmlease__handles_unlock();
    return fd < 0 ? -EBADF : 0;
}

void shmlease__lk_init_unlock(int fd)
{
    shmlease__ofd_lock(fd, F_UNLCK, SHM_LK_INIT_BYTE, 0);
}
