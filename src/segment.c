/*
 * The segment: layout, validation, initialisation, mapping, and the
 * first-opener protocol (docs/first-opener.md).
 *
 * Two files per table: the segment "/shmlease.NAME" (mapped) and the lock
 * file "/shmlease-lk.NAME" (lockfile.c: empty, never mapped, only the
 * classes that may write the segment may open it). Every file lock lives on
 * the lock file: a process that may only read the segment cannot open it,
 * so no lock it could take on any byte of the segment (or anything else)
 * concerns us. The header records the lock file's inode and device.
 *
 * First-opener protocol (docs/failure-modes.md F13). The races: between shm_open(O_CREAT)
 * and a complete header an attacher can see a 0-byte file or a half-written
 * header; the creator can die half-way; the table can be unlinked meanwhile.
 * The rule that closes them:
 *
 *   Whoever holds the init lock (an OFD write lock on byte SHM_LK_INIT_BYTE of
 *   the lock file, which must still be the file linked under its name) and
 *   finds the segment missing, or init_state != READY and the segment left
 *   by one of our creators, (re)creates and initialises it from scratch,
 *   recording that lock file in the header.
 *
 * The creation record proves "left by one of our creators": a creator sets
 * the lock file's size to 1 before it creates the segment file (or starts
 * again on a half-built one) and back to 0 once the segment is READY. An
 * empty or zero-filled file without it is someone else's, and is refused
 * (rebuildable()).
 *
 * A read-write opener: opens or creates the lock file (its mode derived from
 * the segment's mode, or from the mode asked when the segment does not exist
 * yet); takes the init lock (polling until open_timeout_ms); checks that the
 * lock file is still linked under its name (shmlease_unlink removes it under
 * the same lock; if it was, the opener starts over with a fresh one); then
 * opens or creates the segment and validates or initialises it; then lets go.
 * (An existing READY table, the common case, is attached without the init
 * lock: attach_ready_unlocked() below.)
 * So nobody attaches to a half-built header: either init_state is READY
 * (stored last, with release) or the opener builds the segment itself, and a
 * segment is always built while its creator holds the lock, from before the
 * segment exists. A creator that dies at any point loses the lock with its
 * life: dead before creating the segment, it leaves only the lock file, which
 * the next opener uses; dead after, the next opener finds init_state !=
 * READY and the record, and starts over (ftruncate to 0 first, so every
 * byte is zero again).
 * A READY segment is never re-initialised, so robust mutexes are initialised
 * exactly once while anyone can be attached (docs/failure-modes.md F1). A READY segment
 * whose header names another lock file than the one under the name (the lock
 * file was removed and made again, or replaced) is refused with -EPROTO:
 * two lock files for one table would be two liveness truths. A lock file
 * without a segment is stale and harmless: the next creator uses it (after
 * checking who owns it), shmlease_unlink removes it.
 *
 * Read-only openers never lock and never create: they wait briefly for READY
 * and otherwise report -EPROTO; they open the lock file read-only if they may
 * (for F_OFD_GETLK), else liveness comes from /proc/locks (liveness.c).
 *
 * Validation reads the header with pread() before mapping anything, so a
 * truncated or foreign file is refused without a SIGBUS and without a write.
 */
#include "segment.h"
#include "clock.h"
#include "fault.h"
#include "handles.h"
#include "lockfile.h"
#include "mutex.h"
#include "names.h"
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A read-only open waits this long for a segment being initialised to be
 * READY, polling every READONLY_POLL_MS, then reports -EPROTO. */
#define READONLY_READY_WAIT_MS 100u
#define READONLY_POLL_MS         2u



static uint32_t next_pow2(uint64_t v)
{
    uint32_t p = 16;
    while (p < v)
        p <<= 1;
    return p;
}

/* Sizes of a table of CAPACITY entries. */
static void layout(uint32_t capacity, struct shm_header *h)
{
    h->header_size = SHM_HEADER_SIZE;
    h->capacity = capacity;
    h->nbuckets = next_pow2((uint64_t)capacity * 2);
    h->reg_slots = SHM_REG_SLOTS;
    h->entry_size = sizeof(struct shm_entry);
    h->reg_size = sizeof(struct shm_reg);
    h->reg_off = SHM_HEADER_SIZE;
    h->index_off = shm_waits_off(h) + (uint64_t)SHM_REG_SLOTS * SHM_WAIT_RECORDS * sizeof(uint32_t);
    h->entries_off = h->index_off + (uint64_t)h->nbuckets * sizeof(uint64_t);
    uint64_t end = h->entries_off + (uint64_t)capacity * sizeof(struct shm_entry);
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    h->total_size = (end + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
}

uint64_t shmlease__header_checksum(const struct shm_header *h)
{
    /* FNV-1a over the immutable fields, magic .. creator_uid. */
    const uint8_t *p = (const uint8_t *)h;
    size_t n = offsetof(struct shm_header, checksum);
    uint32_t x = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        x ^= p[i];
        x *= 16777619u;
    }
    return x;
}

/* Everything an attacher checks. 0 or -EPROTO. */
int shmlease__check_header(const struct shm_header *h, uint64_t file_size)
{
    if (h->magic != SHM_MAGIC)
        return -EPROTO;              /* foreign, or the other byte order */
    if (h->format != shm_format_word())
        return -EPROTO;
    if (h->checksum != (uint32_t)shmlease__header_checksum(h))
        return -EPROTO;
    if (h->capacity == 0 || h->capacity > SHMLEASE_CAPACITY_MAX)
        return -EPROTO;
    struct shm_header want;
    memset(&want, 0, sizeof want);
    layout(h->capacity, &want);
    if (h->header_size != want.header_size || h->nbuckets != want.nbuckets ||
        h->reg_slots != want.reg_slots || h->entry_size != want.entry_size ||
        h->reg_size != want.reg_size || h->reg_off != want.reg_off ||
        h->index_off != want.index_off || h->entries_off != want.entries_off ||
        h->total_size != want.total_size)
        return -EPROTO;
    if (file_size < h->total_size)
        return -EPROTO;              /* truncated */
    return 0;
}



static uint64_t random_u64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 16);
    }
    return v | 1;
}

/* Builds a new segment in FD. Called with the init lock held. */
static int initialise(int fd, uint32_t capacity, uint64_t now_ms, int created, const struct stat *lk)
{
    struct shm_header proto;
    memset(&proto, 0, sizeof proto);
    layout(capacity, &proto);
    proto.lock_ino = (uint64_t)lk->st_ino;
    proto.lock_dev = (uint64_t)lk->st_dev;

    /* Start from all zeroes whatever a dead initialiser left. */
    if (!created && ftruncate(fd, 0) != 0)
        return -errno;
    SHMLEASE_FAULT("init.after_lock");
    int rc = posix_fallocate(fd, 0, (off_t)proto.total_size);
    if (rc != 0) {
        if (ftruncate(fd, 0) != 0) { /* leave a 0-byte file: the next opener retries */ }
        return rc == EFBIG ? -ENOSPC : -rc;
    }
    SHMLEASE_FAULT("init.after_fallocate");

    uint8_t *map = mmap(NULL, proto.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return -errno;
    struct shm_header *h = (struct shm_header *)map;
    /* magic and format first: a segment with them and without READY is
     * recognised as our own half-built one (see half_built()). */
    h->format = shm_format_word();
    st_release(&h->magic, SHM_MAGIC);
    memcpy(&h->header_size, &proto.header_size,
           offsetof(struct shm_header, creator_uid) - offsetof(struct shm_header, header_size));
    h->epoch = random_u64();
    h->created_at = now_ms;
    h->timens_ino = shmlease__self()->timens;
    memcpy(h->boot_id, shmlease__self()->boot_id, sizeof h->boot_id);
    h->creator_uid = (uint32_t)geteuid();
    h->checksum = (uint32_t)shmlease__header_checksum(h);

    rc = shmlease__mutex_init(&h->index_mutex);
    if (rc == 0)
        rc = shmlease__mutex_init(&h->reg_mutex);
    if (rc != 0) {
        munmap(map, proto.total_size);
        return rc;
    }
    /* All entries RETIRED (zero) and on the free list, in order. */
    struct shm_entry *entries = (struct shm_entry *)(map + h->entries_off);
    for (uint32_t i = 0; i < capacity; i++)
        entries[i].next_free = (i + 1 < capacity) ? i + 2 : 0;
    h->free_head = 1;
    h->reg_hint = 1;
    SHMLEASE_FAULT("init.after_mutexes");
    st_release(&h->init_state, SHM_INIT_READY);
    munmap(map, proto.total_size);
    return 0;
}

/* Are bytes FROM..SIZE of the file all zero? */
static int file_is_zero(int fd, uint64_t from, uint64_t size)
{
    static const uint8_t zero[65536];
    uint8_t *buf = malloc(sizeof zero);
    if (!buf)
        return 0;
    int ok = 1;
    for (uint64_t off = from; ok && off < size; off += sizeof zero) {
        ssize_t n = pread(fd, buf, sizeof zero, (off_t)off);
        if (n <= 0)
            break;
        ok = memcmp(buf, zero, (size_t)n) == 0;
    }
    free(buf);
    return ok;
}

/* Does the not-READY file FD (header H, SIZE bytes) look like what a dying
 * initialiser leaves: nothing, zeroes (space reserved, no header yet), or
 * our magic and format without READY? Anything else is a foreign file,
 * which we must not overwrite. Looks alone prove nothing for the first
 * two: see rebuildable(). */
static int half_built(int fd, const struct shm_header *h, uint64_t size)
{
    if (size == 0)
        return 1;
    /* posix_fallocate() sets the whole size at once: a half-built segment
     * is never shorter than its header. */
    if (size < sizeof *h)
        return 0;
    if (h->magic == SHM_MAGIC)
        return h->format == shm_format_word();
    if (h->magic != 0 || (h->format != 0 && h->format != shm_format_word()))
        return 0;
    const uint8_t *p = (const uint8_t *)h;
    for (size_t i = offsetof(struct shm_header, header_size); i < sizeof *h; i++)
        if (p[i])
            return 0;
    /* No header yet: space reserved (zeroes) and nothing else, or foreign.
     * Rare (a creator died), so reading the file through is affordable. */
    return file_is_zero(fd, offsetof(struct shm_header, header_size), size);
}

/* May the not-READY file FD be built again? Only what one of our creators
 * left: it looks half-built, and either the lock file still carries the
 * creation record (BUILDING: a creator set it before it created the
 * segment and clears it once the segment is READY) or the file has our
 * magic and format, which only an initialiser writes. An empty or
 * zero-filled file without the record was put there by someone else. */
static int rebuildable(int fd, const struct shm_header *h, uint64_t size, int building)
{
    if (!half_built(fd, h, size))
        return 0;
    return building || (size >= sizeof *h && h->magic == SHM_MAGIC);
}

/* The header of the segment FD into *H (zeroes past the end of a short
 * file); *SIZE is the file's size, read again if RESTAT (else the caller's
 * fstat, made just before, stands). */
static int read_header(int fd, struct shm_header *h, uint64_t *size, int restat)
{
    memset(h, 0, sizeof *h);
    struct stat st;
    if (restat) {
        *size = 0;
        if (fstat(fd, &st) != 0)
            return -errno;
        *size = (uint64_t)st.st_size;
    }
    ssize_t n = pread(fd, h, sizeof *h, 0);
    if (n < 0)
        return -errno;
    return 0;
}


/* ---- attaching ------------------------------------------------------------ */

/* Maps the segment t->sfd whose header HH was read and validated. A
 * read-write handle writes the header at once (registration) and at every
 * acquire: its page is made present and writable by one madvise rather
 * than by a page fault (a trap, dearer than a system call, most of all on
 * a virtual machine; EINVAL before Linux 5.14, and it faults in as before).
 * Then READY is read again through the mapping, with acquire: the
 * initialiser's stores before its release of READY (the mutexes, the free
 * list) are visible to this process even when the header was read without
 * the init lock. */
static int map_table(shmlease_table *t, const struct shm_header *hh)
{
    int prot = PROT_READ | (t->readonly ? 0 : PROT_WRITE);
    void *map = shmlease__handle_map(t, hh->total_size, prot, t->sfd);
    if (map == MAP_FAILED)
        return errno == EACCES ? -EACCES : -ENOMEM;
#ifdef MADV_POPULATE_WRITE
    if (!t->readonly)
        madvise(map, SHM_HEADER_SIZE, MADV_POPULATE_WRITE);
#endif
    if (ld_acquire(&((struct shm_header *)map)->init_state) != SHM_INIT_READY) {
        shmlease__handle_unmap(t, map, hh->total_size);
        return -EPROTO;                /* made not READY since: not a table we know */
    }
    t->map = map;
    t->map_size = hh->total_size;
    t->hdr = (struct shm_header *)map;
    t->reg = (struct shm_reg *)(t->map + hh->reg_off);
    t->waits = (uint32_t *)(t->map + shm_waits_off(hh));
    t->buckets = (uint64_t *)(t->map + hh->index_off);
    t->entries = (struct shm_entry *)(t->map + hh->entries_off);
    t->capacity = hh->capacity;
    t->nbuckets = hh->nbuckets;
    t->created_at = hh->created_at;
    t->epoch = hh->epoch;
    return 0;
}

/* Opens the existing segment PATH: the descriptor or a negative code
 * (-EPROTO for a name that is not a segment). O_NONBLOCK: a FIFO squatting
 * the name must not block the open. */
static int existing_fd(const char *path, int ro)
{
    int fd = shm_open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd >= 0)
        return fd;
    if (errno == EISDIR || errno == ENXIO || errno == ELOOP || errno == EINVAL)
        return -EPROTO;                /* something that is not a segment */
    return -errno;
}

/* What one read-write open knows as it goes: init_or_attach() and its steps. */
struct rw_open {
    const shmlease_options *o;
    uint32_t mode;          /* of a table made now */
    uint32_t capacity;      /* of a table made now */
    gid_t    gid;           /* group of a table made now, or SHM_NO_GID */
    int      create;        /* may create (not NOCREATE) */
    int      share;         /* SHARE: another user's table is welcome */
    struct stat lk;         /* the lock file we hold the init lock on */
    int      lk_created;    /* ... which this call made */
    int      building;      /* ... whose creation record is set */
    int      created;       /* this call made the segment */
};

/* May this process give its files group GID? (fchown would say EPERM.) */
static int may_give_group(gid_t gid)
{
    if (geteuid() == 0 || gid == getegid())
        return 1;
    int n = getgroups(0, NULL);
    gid_t *groups = n > 0 ? calloc((size_t)n, sizeof *groups) : NULL;
    if (!groups)
        return 0;
    n = getgroups(n, groups);
    int in = 0;
    for (int i = 0; i < n && !in; i++)
        in = groups[i] == gid;
    free(groups);
    return in;
}

/* The segment of a read-write open into a descriptor: the existing one
 * first (the common case: one open(), no failing O_EXCL), unless EXCL;
 * else, if allowed, a new one, the creation record set on the lock file
 * LKFD before the segment exists (and taken back if this call creates
 * nothing after all). Called with the init lock and the handle-list lock
 * held: the descriptor must be on the handle before any fork can copy it. */
static int rw_segment_fd(const char *path, struct rw_open *r, int lkfd)
{
    int excl = (r->o->flags & SHMLEASE_OPEN_EXCL) != 0;
    int was_building = r->building;
    int fd = -EAGAIN;
    for (int tries = 0; tries < OPEN_ROUNDS; tries++) {
        fd = excl ? -ENOENT : existing_fd(path, 0);
        if (fd != -ENOENT || !r->create)
            break;
        if (!r->building) {
            fd = shmlease__lk_set_building(lkfd, 1);
            if (fd)
                break;
            r->building = 1;
        }
        fd = shmlease__shm_create(path, (mode_t)r->mode, r->gid);
        if (fd >= 0)
            r->created = 1;
        if (fd != -EEXIST)
            break;
        if (excl)
            break;
        fd = -EAGAIN;                  /* made between our two calls: go round */
    }
    if (!r->created && r->building && !was_building && shmlease__lk_set_building(lkfd, 0) == 0)
        r->building = 0;
    return fd;
}

/* The lock file into t->fd: the existing one, else a new one whose mode
 * (and group) follow the segment's (the mode and group asked, when there
 * is no segment yet; and without a segment a NOCREATE open ends here with
 * -ENOENT). */
static int open_lock_file(shmlease_table *t, struct rw_open *r)
{
    int rc = shmlease__lk_open(t, 0, 0, SHM_NO_GID, &r->lk_created);
    if (rc != -ENOENT)
        return rc;
    char sfspath[PATH_LEN];
    shmlease__shm_path(sfspath, sizeof sfspath, t->name);
    struct stat sst;
    mode_t smode = r->mode;
    gid_t gid = r->gid;
    if (lstat(sfspath, &sst) == 0) {
        if (S_ISREG(sst.st_mode)) {
            smode = sst.st_mode & 0777;
            gid = may_give_group(sst.st_gid) ? sst.st_gid : SHM_NO_GID;
        }
    } else if (errno == ENOENT && !r->create) {
        return -ENOENT;
    }
    return shmlease__lk_open(t, shmlease__lk_mode(smode), 1, gid, &r->lk_created);
}

/* Is there no segment under NAME? */
static int segment_missing(const char *name)
{
    char sfspath[PATH_LEN];
    shmlease__shm_path(sfspath, sizeof sfspath, name);
    struct stat sst;
    return lstat(sfspath, &sst) != 0 && errno == ENOENT;
}

/* A lock file of ours left without a segment (a creator died before making
 * it, or a table removed by hand) that the table about to be created could
 * not use as it is: another mode or group than the new table's. Others may
 * still hold descriptors made under its old mode or group, so it is not
 * changed but replaced (the caller holds its init lock, as an unlink
 * would). */
static int stale_lock_file_misfits(const shmlease_table *t, const struct rw_open *r)
{
    if (!r->create || r->lk_created || r->lk.st_uid != t->euid || !segment_missing(t->name))
        return 0;
    gid_t want_gid = r->gid != SHM_NO_GID ? r->gid : getegid();
    return (r->lk.st_mode & 07777) != shmlease__lk_mode(r->mode) || r->lk.st_gid != want_gid;
}

/* Step 1 of a read-write open: the init lock, on the lock file that is
 * linked under the name (a lock file unlinked by shmlease_unlink before we
 * got its lock is dropped and the protocol starts over with a fresh one; a
 * stale one of ours that does not fit the table to be made is replaced).
 * Polls until DEADLINE (monotonic ms). Fills r->lk with the lock file. */
static int lock_linked_lock_file(shmlease_table *t, struct rw_open *r, uint64_t deadline)
{
    for (int round = 0; round < OPEN_ROUNDS; round++) {
        int rc = open_lock_file(t, r);
        if (rc == 0)
            rc = shmlease__lk_init_lock_until(t->fd, deadline);
        if (rc)
            return rc;
        if (shmlease__lk_linked(t->fd, t->name, &r->lk)) {
            if (!stale_lock_file_misfits(t, r)) {
                r->building = shmlease__lk_building(&r->lk);
                return 0;
            }
            shmlease__lk_unlink(t->name, &r->lk);
        }
        shmlease__handle_close_fd(&t->fd);
    }
    return -EAGAIN;
}

/* Whose is the segment t->sfd, and may the lock file LK serve it? (SHARE:
 * the caller agreed to use another user's table; CREATED: this call made
 * the segment.) *SIZE: its size. */
static int check_segment(shmlease_table *t, int share, const struct stat *lk, int created, uint64_t *size)
{
    struct stat st;
    if (fstat(t->sfd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;                /* a FIFO, a directory...: not a table */
    *size = (uint64_t)st.st_size;
    t->ino = st.st_ino;
    t->dev = st.st_dev;
    t->lk_ino = lk->st_ino;
    t->lk_dev = lk->st_dev;
    /* A table of another user is not used unless the caller asked to share
     * (docs/failure-modes.md F15): a squatter cannot capture our leases. */
    if (!created && st.st_uid != t->euid && !share)
        return -EPERM;
    return shmlease__lk_trusted(t->fd, lk, &st, t->euid);
}

/* Step 2, under the init lock: opens (or creates) the segment into t->sfd
 * and checks whose it is. *SIZE: its size. */
static int open_segment_locked(shmlease_table *t, struct rw_open *r, uint64_t *size)
{
    char spath[PATH_LEN];
    shmlease__shm_name(spath, sizeof spath, t->name);
    shmlease__handles_lock();
    int fd = rw_segment_fd(spath, r, t->fd);
    if (fd >= 0)
        t->sfd = fd;
    shmlease__handles_unlock();
    if (fd < 0) {
        if (fd == -ENOENT && S_ISREG(r->lk.st_mode))
            shmlease__lk_unlink(t->name, &r->lk);   /* no segment: a stale lock file */
        return fd;
    }
    return check_segment(t, r->share, &r->lk, r->created, size);
}

/* Step 3, under the init lock: reads the header (*SIZE: the size step 2
 * read); a segment that is not READY and that one of our creators left
 * half-built (never a foreign file) is built again, under the creation
 * record. The record is cleared once the segment is READY. */
static int read_or_initialise(shmlease_table *t, struct rw_open *r, struct shm_header *hh, uint64_t *size)
{
    int fd = t->sfd;
    int rc = read_header(fd, hh, size, 0);
    if (rc)
        return rc;
    if (hh->init_state == SHM_INIT_READY) {
        /* A creator that died between READY and clearing its record. */
        if (r->building && shmlease__lk_set_building(t->fd, 0) == 0)
            r->building = 0;
        return 0;
    }
    if (!r->created) {
        if (!rebuildable(fd, hh, *size, r->building))
            return -EPROTO;            /* not ours: never write to it */
        if (!r->building) {
            rc = shmlease__lk_set_building(t->fd, 1);
            if (rc)
                return rc;
            r->building = 1;
        }
    }
    const shmlease_options *o = r->o;
    uint64_t now = o->clock_ms ? o->clock_ms(o->clock_ctx) : shmlease__mono_ms();
    rc = initialise(fd, r->capacity, now, r->created, &r->lk);
    if (rc == 0) {
        if (shmlease__lk_set_building(t->fd, 0) == 0)
            r->building = 0;           /* else the next locked opener clears it */
        return read_header(fd, hh, size, 1);
    }
    if (rc == -ENOSPC && r->created) {
        char spath[PATH_LEN];
        shmlease__shm_name(spath, sizeof spath, t->name);
        shm_unlink(spath);
        shmlease__lk_unlink(t->name, &r->lk);
    }
    return rc;
}

/*
 * The common case without the init lock: an existing lock file and an
 * existing segment whose header is READY, valid and names that lock file.
 * Such a segment is never initialised again and its header never changes,
 * so the lock would add nothing; a read-only open attaches the same way.
 * Racing with shmlease_unlink, the open either attaches to the files the
 * unlink then removes (as if it had returned first) or sees a mismatch or a
 * missing file. 0, or 1: anything else (no lock file or segment, not READY
 * yet, any check failing, even a header read torn by a concurrent
 * initialiser): the descriptors are closed and the locked protocol decides,
 * with its errors.
 */
static int attach_ready_unlocked(shmlease_table *t, int share, struct shm_header *hh, uint64_t *size)
{
    char spath[PATH_LEN];
    shmlease__shm_name(spath, sizeof spath, t->name);
    struct stat lk;
    int ok = shmlease__lk_open(t, 0, 0, SHM_NO_GID, NULL) == 0 && fstat(t->fd, &lk) == 0;
    if (ok) {
        shmlease__handles_lock();
        int fd = existing_fd(spath, 0);
        if (fd >= 0)
            t->sfd = fd;
        shmlease__handles_unlock();
        ok = fd >= 0 && check_segment(t, share, &lk, 0, size) == 0 && read_header(t->sfd, hh, size, 0) == 0 &&
             hh->init_state == SHM_INIT_READY && shmlease__check_header(hh, *size) == 0 &&
             hh->lock_ino == (uint64_t)lk.st_ino && hh->lock_dev == (uint64_t)lk.st_dev;
    }
    if (ok)
        return 0;
    shmlease__handle_close_fd(&t->sfd);
    shmlease__handle_close_fd(&t->fd);
    return 1;
}

/* -EACCES for another user's table, opened without SHARE, is -EPERM: the
 * answer does not depend on the order in which the files were tried (the
 * lock file may refuse us before the segment's owner is read). */
static int refusal_code(const shmlease_table *t, int share, int rc)
{
    if (rc != -EACCES || share)
        return rc;
    char sfspath[PATH_LEN];
    shmlease__shm_path(sfspath, sizeof sfspath, t->name);
    struct stat st;
    if (lstat(sfspath, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid != t->euid)
        return -EPERM;
    return rc;
}

/* The first-opener protocol of a read-write open (see the top of this file),
 * bounded: the init lock is polled until DEADLINE (monotonic ms). Opens the
 * segment into t->sfd and fills *HH and *SIZE with a READY header. A READY
 * table is attached without the lock (attach_ready_unlocked). A lock file
 * this call made is removed again if the open fails without making the
 * segment: a refused open leaves nothing behind. */
static int init_or_attach(shmlease_table *t, const shmlease_options *o, uint32_t mode, uint32_t capacity,
                          uint64_t deadline, struct shm_header *hh, uint64_t *size)
{
    int share = (o->flags & SHMLEASE_OPEN_SHARE) != 0;
    if (!(o->flags & SHMLEASE_OPEN_EXCL) && attach_ready_unlocked(t, share, hh, size) == 0)
        return 0;
    struct rw_open r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.mode = mode;
    r.capacity = capacity;
    r.gid = (o->flags & SHMLEASE_OPEN_GROUP) ? (gid_t)o->gid : SHM_NO_GID;
    r.create = !(o->flags & SHMLEASE_OPEN_NOCREATE);
    r.share = share;
    int rc = lock_linked_lock_file(t, &r, deadline);
    if (rc && !r.create && segment_missing(t->name))
        rc = -ENOENT;                  /* whatever squats the lock file's name */
    if (rc)
        return refusal_code(t, share, rc);
    SHMLEASE_FAULT("init.lock_file");
    rc = open_segment_locked(t, &r, size);
    if (rc == 0)
        rc = read_or_initialise(t, &r, hh, size);
    if (rc && r.lk_created && !r.created)
        shmlease__lk_unlink(t->name, &r.lk);
    shmlease__lk_init_unlock(t->fd);
    return refusal_code(t, share, rc);
}

/* A read-only open never locks and never creates: waits a little for READY,
 * else -EPROTO. *SIZE: the size the caller read just before. */
static int attach_readonly(int fd, struct shm_header *hh, uint64_t *size)
{
    for (unsigned waited = 0;; waited += READONLY_POLL_MS) {
        int rc = read_header(fd, hh, size, waited > 0);
        if (rc)
            return rc;
        if (ld_acquire(&hh->init_state) == SHM_INIT_READY)
            return 0;
        if (waited >= READONLY_READY_WAIT_MS)
            return -EPROTO;
        shmlease__sleep_ms(READONLY_POLL_MS);
    }
}

static int open_readonly(shmlease_table *t, struct shm_header *hh, uint64_t *size)
{
    char path[PATH_LEN];
    shmlease__shm_name(path, sizeof path, t->name);
    shmlease__handles_lock();
    int fd = existing_fd(path, 1);
    if (fd >= 0)
        t->sfd = fd;
    shmlease__handles_unlock();
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;
    *size = (uint64_t)st.st_size;
    t->ino = st.st_ino;
    t->dev = st.st_dev;
    return attach_readonly(fd, hh, size);
}

/* Is the file FD a table shmlease_unlink may remove: a segment of ours, of
 * any format or byte order (a table of another version must stay
 * removable), or one our creator left half-built (BUILDING: the lock
 * file's creation record)? 0, -EPROTO, or another negative code. */
int shmlease__segment_is_ours(int fd, int building)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;
    struct shm_header h;
    uint64_t size = (uint64_t)st.st_size;
    int rc = read_header(fd, &h, &size, 0);
    if (rc)
        return rc;
    if (size >= sizeof h.magic && (h.magic == SHM_MAGIC || h.magic == SHM_MAGIC_SWAPPED))
        return 0;
    return building && half_built(fd, &h, size) ? 0 : -EPROTO;
}

/* Monotonic clocks agree only within one boot and one time namespace: a
 * writer on another clock would read every deadline wrong. */
static int same_clock(const struct shm_header *hh)
{
    const struct shmlease__self *me = shmlease__self();
    return hh->timens_ino == me->timens && memcmp(hh->boot_id, me->boot_id, sizeof hh->boot_id) == 0;
}

int shmlease__segment_attach(shmlease_table *t, const shmlease_options *o, uint32_t mode,
                             uint32_t capacity, uint64_t deadline)
{
    struct shm_header hh;
    memset(&hh, 0, sizeof hh);         /* every path fills it; says so to the analyzer too */
    uint64_t size = 0;
    int rc = t->readonly ? open_readonly(t, &hh, &size)
                         : init_or_attach(t, o, mode, capacity, deadline, &hh, &size);
    if (rc == 0)
        rc = shmlease__check_header(&hh, size);
    /* The lock file we locked must be the one the segment was initialised
     * with: if it was removed and made again (or replaced), the handles
     * attached before hold their registry locks on the old one, and we would
     * see them all dead. Refused, never two lock files for one table. */
    if (rc == 0 && !t->readonly && (hh.lock_ino != (uint64_t)t->lk_ino || hh.lock_dev != (uint64_t)t->lk_dev))
        rc = -EPROTO;
    if (rc == 0 && !t->readonly && !same_clock(&hh))
        rc = -EXDEV;
    if (rc == 0)
        rc = map_table(t, &hh);
    if (rc)
        return rc;
    shmlease__handle_close_fd(&t->sfd);         /* the mapping is all we need of it */
    if (t->readonly) {
        t->lk_ino = (ino_t)hh.lock_ino;
        t->lk_dev = (dev_t)hh.lock_dev;
        shmlease__lk_open_readonly(t);
    }
    t->my_pidns = shmlease__self()->pidns;
    return 0;
}

