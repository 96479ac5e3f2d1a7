/*
 * Opening and closing a table: shmlease_open, shmlease_close,
 * shmlease_unlink. The handle is listed for fork() from its first instant
 * (handles.c), the segment is attached by the first-opener protocol
 * (segment.c, docs/first-opener.md), and a read-write handle is registered
 * (registry.c) before shmlease_open returns.
 */
#include "abi.h"
#include "clock.h"
#include "compiler.h"
#include "fault.h"
#include "handles.h"
#include "keepalive.h"
#include "lockfile.h"
#include "names.h"
#include "redis.h"
#include "registry.h"
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_OPEN_TIMEOUT_MS 5000u
#define DEFAULT_MODE            0600u

/* 0 or -EINVAL: what shmlease_open() checks before it touches anything. */
static int check_options(const char *name, const shmlease_options *o)
{
    int rc = shmlease__validate_name(name);
    if (rc)
        return rc;
    const uint32_t known = SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_EXCL | SHMLEASE_OPEN_READONLY |
                           SHMLEASE_OPEN_SHARE | SHMLEASE_OPEN_GROUP;
    if ((o->flags & ~known) || o->capacity > SHMLEASE_CAPACITY_MAX || o->mode > 0777)
        return -EINVAL;
    if ((o->flags & SHMLEASE_OPEN_EXCL) && (o->flags & (SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_READONLY)))
        return -EINVAL;
    if (!SHMLEASE_RESERVED_ZERO(o))
        return -EINVAL;              /* asks for what this version does not know */
    return 0;
}

/* Maps the table into T and, for a read-write handle, registers it, all
 * within the open's time bound. */
static int attach(shmlease_table *t, const shmlease_options *o)
{
    uint32_t capacity = o->capacity ? o->capacity : SHMLEASE_DEFAULT_CAPACITY;
    uint32_t mode = o->mode ? o->mode : DEFAULT_MODE;
    uint64_t deadline = shmlease__mono_ms() + (o->open_timeout_ms ? o->open_timeout_ms : DEFAULT_OPEN_TIMEOUT_MS);
    int rc = shmlease__segment_attach(t, o, mode, capacity, deadline);
    if (rc || t->readonly)
        return rc;
    uint64_t now = shmlease__mono_ms();
    return shmlease__ensure_registered(t, deadline > now ? deadline - now : 0);
}

SHM_API int shmlease_open(const char *name, const shmlease_options *opts, shmlease_table **out)
{
    static const shmlease_options defaults;
    const shmlease_options *o = opts ? opts : &defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    int rc = check_options(name, o);
    if (rc)
        return rc;
    if (o->backend)
        return shmlease__redis_open(name, o, out);
#ifdef SHMLEASE_FAULT_POINTS
    shmlease__fault_from_env();
#endif
    shmlease_table *t = shmlease__handle_new(name);
    if (!t)
        return -ENOMEM;
    t->readonly = (o->flags & SHMLEASE_OPEN_READONLY) != 0;
    t->euid = geteuid();
    t->clock_ms = o->clock_ms;
    t->clock_ctx = o->clock_ctx;
    t->fake_clock = o->clock_ms != NULL;
    rc = attach(t, o);
    if (rc) {
        shmlease__handle_free(t);
        return rc == -EFBIG ? -ENOSPC : rc;
    }
    shmlease__handle_opened(t);
    *out = t;
    return 0;
}

SHM_API void shmlease_close(shmlease_table *t)
{
    if (!t)
        return;
    if (t->remote) {
        shmlease__redis_close(t);
        return;
    }
    shmlease__keepalive_close(t);                /* ends t's keepalives, no "lost" */
    if (!t->readonly)
        shmlease__unregister(t);
    shmlease__handle_free(t);                    /* closing t->fd drops the slot's byte lock */
}

/* How long shmlease_unlink waits for an initialiser to finish before it
 * removes the files anyway. */
#define UNLINK_WAIT_MS 1000

/* Is what lies under the segment's name a table we may remove (see
 * shmlease__segment_is_ours)? BUILDING: the lock file's creation record.
 * 0, -ENOENT, -EPROTO (not a table: left alone), -EACCES (not readable). */
static int removable(const char *name, int building)
{
    char path[PATH_LEN], fspath[PATH_LEN];
    shmlease__shm_name(path, sizeof path, name);
    shmlease__shm_path(fspath, sizeof fspath, name);
    struct stat st;
    if (lstat(fspath, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;                /* a directory, FIFO, symlink...: not ours */
    int fd = shm_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0)
        return errno == EACCES ? -EACCES : errno == ENOENT ? -ENOENT : -EPROTO;
    int rc = shmlease__segment_is_ours(fd, building);
    close(fd);
    return rc;
}

/*
 * Removes the segment, then the lock file, under the init lock (when this
 * process may open the lock file), so that an opener racing with us either
 * finishes first (and its table is then removed as a whole) or finds its lock
 * file unlinked once it gets the lock and starts over with fresh files: never
 * a new segment that names a removed lock file. A missing lock file is fine
 * (and a stale one is removed even when the segment is already gone).
 *
 * Only a table is removed (removable()): whatever else squats the name is
 * left as it is, with its lock file, and the answer is -EPROTO.
 *
 * Handles still open keep working on the removed files: they hold a mapping
 * of the segment and a descriptor of the lock file; a table created again
 * under the same name is a new table with its own files.
 */
SHM_API int shmlease_unlink(const char *name)
{
    int rc = shmlease__validate_name(name);
    if (rc)
        return rc;
    char path[PATH_LEN], lpath[PATH_LEN];
    shmlease__shm_name(path, sizeof path, name);
    shmlease__lk_name(lpath, sizeof lpath, name);
    /* The lock file's descriptor lives on a listed handle that is "opening",
     * so that a fork meanwhile lets go of it in the child. */
    shmlease_table *t = shmlease__handle_new(name);
    struct stat lk;
    int locked = 0;
    if (t) {
        shmlease__handles_lock();
        t->fd = shm_open(lpath, O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
        shmlease__handles_unlock();
        locked = t->fd >= 0 && fstat(t->fd, &lk) == 0 && S_ISREG(lk.st_mode) &&
                 shmlease__lk_init_lock_until(t->fd, shmlease__mono_ms() + UNLINK_WAIT_MS) == 0;
        if (locked && fstat(t->fd, &lk) != 0)
            locked = 0;                /* the record as of now, under the lock */
    }
    rc = removable(name, locked && shmlease__lk_building(&lk));
    if (rc == 0 && shm_unlink(path) != 0)
        rc = errno == EPERM || errno == EACCES ? -EACCES : -errno;   /* EPERM: sticky /dev/shm */
    if (rc == 0 || rc == -ENOENT) {
        if (locked)
            shmlease__lk_unlink(name, &lk);   /* still the file we locked */
        else if (shm_unlink(lpath) != 0 && errno != ENOENT) {
            /* not ours to remove (another user's), or already gone */
        }
    }
    if (t)
        shmlease__handle_free(t);                /* lets go of the init lock */
    return rc;
}

SHM_API int shmlease_unlink_backend(const char *name, const char *backend)
{
    return backend ? shmlease__redis_unlink(name, backend) : shmlease_unlink(name);
}
