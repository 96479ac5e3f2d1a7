/*
 * The lock file "/shmlease-lk.NAME": empty, never mapped, open only to the
 * classes (user, group, other) that may write the segment. Every file lock
 * of a table lives there (docs/first-opener.md, docs/liveness.md):
 *   byte SHM_LK_INIT_BYTE      the init lock: whoever initialises the segment
 *                              or unlinks the table holds it (write);
 *   byte SHM_LK_REG_BASE + i   held (write) by the handle registered in
 *                              registry slot i for as long as it is attached.
 * Open-file-description locks (F_OFD_SETLK): the kernel drops them when the
 * last descriptor of the open file description closes, i.e. when the
 * process dies.
 */
#ifndef SHMLEASE_LOCKFILE_H
#define SHMLEASE_LOCKFILE_H

#include "table.h"

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* How many times an open goes round a race with a concurrent create or
 * unlink of the same name before it gives up with -EAGAIN. */
#define OPEN_ROUNDS 100

/* Byte of registry slot IDX in the lock file. */
static inline uint64_t shmlease__reg_lock_off(uint32_t idx) { return (uint64_t)SHM_LK_REG_BASE + idx; }
/* The lock file's mode for a segment of mode SEGMENT_MODE. */
mode_t shmlease__lk_mode(mode_t segment_mode);
/* One OFD lock operation (F_WRLCK, F_RDLCK, F_UNLCK) on byte OFF: 0 or -errno. */
int  shmlease__ofd_lock(int fd, short type, off_t off, int wait);

/* "No group asked": a created file keeps the group the kernel gives it. */
#define SHM_NO_GID ((gid_t)-1)

/* Opens T's lock file into t->fd: the existing one, else (if CREATE) a new
 * one of mode MODE and group GID (or SHM_NO_GID). 0, -ENOENT (none and
 * !CREATE) or another negative code. *CREATED (if not NULL): this call made
 * it. */
int  shmlease__lk_open(shmlease_table *t, mode_t mode, int create, gid_t gid, int *created);
/* The creation record (docs/first-opener.md, section 5): a lock file of
 * size > 0 says that a creator holding the init lock was building the
 * segment. Set (BUILDING 1) or cleared (0) on the lock file FD, with the
 * init lock held. 0 or a negative code. */
int  shmlease__lk_set_building(int fd, int building);
static inline int shmlease__lk_building(const struct stat *lk) { return lk->st_size > 0; }
/* Polls for the init lock on FD until DEADLINE (monotonic ms): 0,
 * -ETIMEDOUT (an initialiser that is stopped) or another error. */
int  shmlease__lk_init_lock_until(int fd, uint64_t deadline);
void shmlease__lk_init_unlock(int fd);
/* Is FD still the file linked as NAME's lock file? Fills *ST. */
int  shmlease__lk_linked(int fd, const char *name, struct stat *st);
/* Removes NAME's lock file if it is still the file LK. */
void shmlease__lk_unlink(const char *name, const struct stat *lk);
/* May the lock file LK (descriptor FD) serve the segment S, for a caller of
 * effective uid ME? 0 or -EACCES/-EPROTO. */
int  shmlease__lk_trusted(int fd, const struct stat *lk, const struct stat *s, uid_t me);
/* Opens NAME's lock file again by name, if it is still the file INO/DEV. */
int  shmlease__lk_open_same(const char *name, int readonly, ino_t ino, dev_t dev);
/* A read-only handle: the lock file read-only into t->fd, if allowed. */
void shmlease__lk_open_readonly(shmlease_table *t);
/* A handle whose descriptor was lost in a fork child: 0 or -EBADF. */
int  shmlease__reopen_fd(shmlease_table *t);

/* Creates the shm object PATH (the lock file or the segment) with exactly
 * MODE and group GID (SHM_NO_GID: the kernel's choice): O_EXCL, readable and
 * writable by the caller only, then fchown to GID, then fchmod to MODE (the
 * umask masked shm_open's mode). The descriptor, -EEXIST, -EPERM (a group
 * the caller may not give), or another negative code; on failure nothing
 * is left under PATH. */
int shmlease__shm_create(const char *path, mode_t mode, gid_t gid);

#endif
