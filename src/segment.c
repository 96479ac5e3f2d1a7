/*
 * The segment: names, the lock file, the first-opener protocol, validation,
 * mapping, close, and what happens to handles across fork().
 *
 * Two files per table: the segment "/shmlease.NAME" (mapped) and the lock
 * file "/shmlease-lk.NAME" (empty, never mapped, mode lk_mode(): only the
 * classes that may write the segment may open it). Every file lock lives on
 * the lock file: a process that may only read the segment cannot open it,
 * so no lock it could take on any byte of the segment (or anything else)
 * concerns us. The header records the lock file's inode and device.
 *
 * First-opener protocol (PITFALLS 13). The races: between shm_open(O_CREAT)
 * and a complete header an attacher can see a 0-byte file or a half-written
 * header; the creator can die half-way; the table can be unlinked meanwhile.
 * The rule that closes them:
 *
 *   Whoever holds the init lock (an OFD write lock on byte INIT_LOCK_OFF of
 *   the lock file, which must still be the file linked under its name) and
 *   finds the segment missing or init_state != READY (re)creates and
 *   initialises it from scratch, recording that lock file in the header.
 *
 * A read-write opener: opens or creates the lock file (its mode derived from
 * the segment's mode, or from the mode asked when the segment does not exist
 * yet); takes the init lock (polling until open_timeout_ms); checks that the
 * lock file is still linked under its name (shmlease_unlink removes it under
 * the same lock; if it was, the opener starts over with a fresh one); then
 * opens or creates the segment and validates or initialises it; then lets go.
 * So nobody attaches to a half-built header: either init_state is READY
 * (stored last, with release) or the opener builds the segment itself, and a
 * segment is always built while its creator holds the lock, from before the
 * segment exists. A creator that dies at any point loses the lock with its
 * life: dead before creating the segment, it leaves only the lock file, which
 * the next opener uses; dead after, the next opener finds init_state !=
 * READY and starts over (ftruncate to 0 first, so every byte is zero again).
 * A READY segment is never re-initialised, so robust mutexes are initialised
 * exactly once while anyone can be attached (PITFALLS 1). A READY segment
 * whose header names another lock file than the one under the name (the lock
 * file was removed and made again, or replaced) is refused with -EPROTO:
 * two lock files for one table would be two liveness truths. A lock file
 * without a segment is stale and harmless: the next creator uses it (after
 * checking who owns it), shmlease_unlink removes it.
 *
 * Read-only openers never lock and never create: they wait briefly for READY
 * and otherwise report -EPROTO; they open the lock file read-only if they may
 * (for F_OFD_GETLK), else liveness comes from /proc/locks (registry.c).
 *
 * Validation reads the header with pread() before mapping anything, so a
 * truncated or foreign file is refused without a SIGBUS and without a write.
 */
#include "internal.h"

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

unsigned shmlease__fork_gen;

#define DEFAULT_OPEN_TIMEOUT_MS 5000u

static pthread_mutex_t g_handles_lock = PTHREAD_MUTEX_INITIALIZER;
static shmlease_table *g_handles;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

int shmlease__validate_name(const char *name)
{
    if (!name)
        return -EINVAL;
    size_t n = strnlen(name, SHMLEASE_NAME_MAX + 1);
    if (n == 0 || n > SHMLEASE_NAME_MAX)
        return -EINVAL;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return -EINVAL;
    }
    return 0;
}

static void shm_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/shmlease.%s", name);
}

/* The lock file's shm name and its path (for stat). The prefix "shmlease-lk."
 * can never be a table's "shmlease." + name: '-' follows "shmlease". */
#define SHM_DIR "/dev/shm"
static void lk_name(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/shmlease-lk.%s", name);
}

static void lk_fspath(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, SHM_DIR "/shmlease-lk.%s", name);
}

#define PATH_LEN (SHMLEASE_NAME_MAX + 48)

uint64_t shmlease__reg_lock_off(uint32_t idx)
{
    return (uint64_t)LK_REG_OFF + idx;
}

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
    h->header_size = HEADER_SIZE;
    h->capacity = capacity;
    h->nbuckets = next_pow2((uint64_t)capacity * 2);
    h->reg_slots = REG_SLOTS;
    h->entry_size = sizeof(struct shm_entry);
    h->reg_size = sizeof(struct shm_reg);
    h->reg_off = HEADER_SIZE;
    h->index_off = waits_off(h) + (uint64_t)REG_SLOTS * WAIT_RECORDS * sizeof(uint32_t);
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
    if (h->format != format_word())
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

static uint64_t mono_ms(void)
{
    return shmlease__sys_clock_ms(NULL);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* This boot's identity (16 bytes of /proc/sys/kernel/random/boot_id), zeroes
 * when it cannot be read. */
void shmlease__boot_id(uint8_t id[16])
{
    memset(id, 0, 16);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f)
        return;
    char buf[64];
    if (fgets(buf, sizeof buf, f)) {
        int n = 0;
        for (const char *p = buf; *p && n < 32; p++) {
            int v = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
            if (v < 0)
                continue;
            id[n / 2] = (uint8_t)(id[n / 2] << 4 | v);
            n++;
        }
    }
    fclose(f);
}

static int ofd_lock(int fd, short type, off_t off, int wait)
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
    h->format = format_word();
    __atomic_store_n(&h->magic, SHM_MAGIC, __ATOMIC_RELEASE);
    memcpy(&h->header_size, &proto.header_size,
           offsetof(struct shm_header, creator_uid) - offsetof(struct shm_header, header_size));
    h->epoch = random_u64();
    h->created_at = now_ms;
    h->timens_ino = shmlease__self()->timens;
    shmlease__boot_id(h->boot_id);
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
    __atomic_store_n(&h->init_state, INIT_STATE_READY, __ATOMIC_RELEASE);
    munmap(map, proto.total_size);
    return 0;
}

/* What a dying initialiser can leave: nothing, zeroes (space reserved, no
 * header yet), or our magic and format without READY. Anything else is a
 * foreign file, which we must not overwrite. */
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

static int half_built(int fd, const struct shm_header *h, uint64_t size)
{
    if (size == 0)
        return 1;
    /* posix_fallocate() sets the whole size at once: a half-built segment
     * is never shorter than its header. */
    if (size < sizeof *h)
        return 0;
    if (h->magic == SHM_MAGIC)
        return h->format == format_word();
    if (h->magic != 0 || (h->format != 0 && h->format != format_word()))
        return 0;
    const uint8_t *p = (const uint8_t *)h;
    for (size_t i = offsetof(struct shm_header, header_size); i < sizeof *h; i++)
        if (p[i])
            return 0;
    /* No header yet: space reserved (zeroes) and nothing else, or foreign.
     * Rare (a creator died), so reading the file through is affordable. */
    return file_is_zero(fd, offsetof(struct shm_header, header_size), size);
}

static int read_header(int fd, struct shm_header *h, uint64_t *size)
{
    memset(h, 0, sizeof *h);
    *size = 0;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    ssize_t n = pread(fd, h, sizeof *h, 0);
    if (n < 0)
        return -errno;
    return 0;
}

/* Opens the lock file of table NAME again by name, if it is still the file
 * INO/DEV (it may have been unlinked and replaced). The descriptor, or a
 * negative code. */
static int open_lock_same_by_name(const char *name, int readonly, ino_t ino, dev_t dev)
{
    char path[PATH_LEN];
    lk_name(path, sizeof path, name);
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

/* ---- fork ----------------------------------------------------------------- */

/*
 * fork() and the registry locks. A child shares every open file description
 * of its parent until its fork handler (below) replaces the handle
 * descriptors (the lock file's: the only one an open handle keeps), and it runs that handler only once it is first scheduled:
 * until then, the parent's registry lock lives on in the child too, and a
 * parent killed in that interval would look alive. So fork() waits, in the
 * parent's handler, until the child has let go: the child closes its end of
 * a pipe when its handler is done (or when it dies); the parent reads to the
 * end of the pipe. Only processes with open handles pay for it, and never
 * longer than FORK_WAIT_MS. Known limit: a child that a tracer keeps
 * stopped before it first runs (a debugger following forks) holds the
 * parent's locks until it runs, so a parent that dies meanwhile looks alive
 * until then.
 */
#define FORK_WAIT_MS 1000
static int g_fork_pipe[2] = {-1, -1};

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_handles_lock);
    g_fork_pipe[0] = g_fork_pipe[1] = -1;
    if (g_handles && pipe2(g_fork_pipe, O_CLOEXEC) != 0)
        g_fork_pipe[0] = g_fork_pipe[1] = -1;
}

static void atfork_parent(void)
{
    if (g_fork_pipe[0] >= 0) {
        close(g_fork_pipe[1]);
        struct pollfd p = {.fd = g_fork_pipe[0], .events = POLLIN};
        uint64_t until = shmlease__sys_clock_ms(NULL) + FORK_WAIT_MS;
        for (;;) {
            uint64_t now = shmlease__sys_clock_ms(NULL);
            if (now >= until)
                break;                          /* a child stopped before it ran */
            int n = poll(&p, 1, (int)(until - now));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            char c;
            ssize_t r = read(g_fork_pipe[0], &c, 1);   /* readable: never blocks */
            if (r == 0 || (r < 0 && errno != EINTR))
                break;                          /* end of pipe: the child let go */
        }
        close(g_fork_pipe[0]);
        g_fork_pipe[0] = g_fork_pipe[1] = -1;
    }
    pthread_mutex_unlock(&g_handles_lock);
}

static void atfork_child(void)
{
    __atomic_add_fetch(&shmlease__fork_gen, 1, __ATOMIC_RELAXED);
    for (shmlease_table *t = g_handles; t; t = t->next) {
        pthread_mutex_init(&t->lock, NULL);
        t->regword = 0;
        if (t->opening) {
            /* Another thread of the parent was opening it (or unlinking the
             * table); that thread does not exist here, and nobody here has
             * the handle: just let go of the descriptions (the lock file's
             * may hold the init lock, or soon a registry lock, on the
             * parent's behalf). */
            if (t->sfd >= 0)
                close(t->sfd);
            if (t->fd >= 0)
                close(t->fd);
            t->sfd = t->fd = -1;
            continue;
        }
        if (t->fd < 0)
            continue;
        char path[32] = "/proc/self/fd/";
        char digits[12];
        int n = 0, v = t->fd;
        do {
            digits[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v && n < 11);
        size_t p = strlen(path);
        while (n)
            path[p++] = digits[--n];
        path[p] = 0;
        int nfd = open(path, (t->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (nfd >= 0) {
            dup3(nfd, t->fd, O_CLOEXEC);
            close(nfd);
        } else {
            close(t->fd);
            t->fd = -1;
        }
    }
    pthread_mutex_init(&g_handles_lock, NULL);
    if (g_fork_pipe[0] >= 0) {                 /* done: the parent's fork() returns */
        close(g_fork_pipe[0]);
        close(g_fork_pipe[1]);
        g_fork_pipe[0] = g_fork_pipe[1] = -1;
    }
}

static void install_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- open / close / unlink ------------------------------------------------ */

/* ---- open / close / unlink ------------------------------------------------ */

static int map_table(shmlease_table *t, const struct shm_header *hh)
{
    int prot = PROT_READ | (t->readonly ? 0 : PROT_WRITE);
    void *map = mmap(NULL, hh->total_size, prot, MAP_SHARED, t->sfd, 0);
    if (map == MAP_FAILED)
        return errno == EACCES ? -EACCES : -ENOMEM;
    t->map = map;
    t->map_size = hh->total_size;
    t->hdr = (struct shm_header *)map;
    t->reg = (struct shm_reg *)(t->map + hh->reg_off);
    t->waits = (uint32_t *)(t->map + waits_off(hh));
    t->buckets = (uint64_t *)(t->map + hh->index_off);
    t->entries = (struct shm_entry *)(t->map + hh->entries_off);
    t->capacity = hh->capacity;
    t->nbuckets = hh->nbuckets;
    t->created_at = hh->created_at;
    t->epoch = hh->epoch;
    return 0;
}

/* Opens (or creates) the segment PATH. Called with g_handles_lock held:
 * the descriptor must be on the handle before any fork can copy it. */
static int open_fd(const char *path, const shmlease_options *o, uint32_t mode, int *created)
{
    int ro = (o->flags & SHMLEASE_OPEN_READONLY) != 0;
    int create = !(o->flags & (SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_READONLY));
    for (int tries = 0; tries < 100; tries++) {
        if (create) {
            int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
            if (fd >= 0) {
                /* shm_open's mode was masked by the umask: set what was asked. */
                if (fchmod(fd, mode) != 0) {
                    int e = -errno;
                    close(fd);
                    shm_unlink(path);
                    return e;
                }
                *created = 1;
                return fd;
            }
            if (errno != EEXIST)
                return -errno;
            if (o->flags & SHMLEASE_OPEN_EXCL)
                return -EEXIST;
        }
        /* O_NONBLOCK: a FIFO squatting the name must not block the open. */
        int fd = shm_open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK, 0);
        if (fd >= 0)
            return fd;
        if (errno == EISDIR || errno == ENXIO || errno == ELOOP)
            return -EPROTO;            /* something that is not a segment */
        if (errno == EINVAL && !create)
            return -EPROTO;
        if (errno != ENOENT || !create)
            return errno == EINVAL ? -EPROTO : -errno;
        /* Unlinked between our two calls: go round. */
    }
    return -EAGAIN;
}

/* Polls for the init lock on FD until DEADLINE (monotonic ms): 0, -ETIMEDOUT
 * (an initialiser that is stopped) or another error. */
static int init_lock_until(int fd, uint64_t deadline)
{
    for (unsigned naps = 0;; naps++) {
        int rc = ofd_lock(fd, F_WRLCK, INIT_LOCK_OFF, 0);
        if (rc == 0)
            return 0;
        if (rc != -EAGAIN && rc != -EACCES)
            return rc;
        if (mono_ms() >= deadline)
            return -ETIMEDOUT;
        sleep_ms(naps < 10 ? 1 : 2);
    }
}

/* Is FD (the lock file) still the file linked as the lock file of NAME? */
static int lock_file_linked(int fd, const char *name, struct stat *st)
{
    char path[PATH_LEN];
    lk_fspath(path, sizeof path, name);
    struct stat by_name;
    if (fstat(fd, st) != 0 || st->st_nlink == 0)
        return 0;
    return lstat(path, &by_name) == 0 && by_name.st_ino == st->st_ino && by_name.st_dev == st->st_dev;
}

/* Removes the lock file of NAME if it is still the file LK. Only with the
 * init lock held on it, and only when no segment can name it. */
static void unlink_lock_file(const char *name, const struct stat *lk)
{
    char path[PATH_LEN];
    lk_fspath(path, sizeof path, name);
    struct stat st;
    if (lstat(path, &st) == 0 && st.st_ino == lk->st_ino && st.st_dev == lk->st_dev) {
        lk_name(path, sizeof path, name);
        shm_unlink(path);
    }
}

/* Opens or creates the lock file of T (mode MODE if it creates it) into
 * t->fd, under g_handles_lock. 0 or a negative code. */
static int open_lock_file(shmlease_table *t, mode_t mode)
{
    char path[PATH_LEN];
    lk_name(path, sizeof path, t->name);
    int fd = -1, e = 0;
    pthread_mutex_lock(&g_handles_lock);
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0) {
            if (fchmod(fd, mode) != 0) {   /* the umask masked shm_open's mode */
                e = -errno;
                close(fd);
                shm_unlink(path);
                fd = -1;
                break;
            }
        } else if (errno == EEXIST) {
            /* O_NONBLOCK: a FIFO squatting the name must not block us. */
            fd = shm_open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
            if (fd < 0 && errno != ENOENT) {  /* ENOENT: unlinked meanwhile, go round */
                e = (errno == EISDIR || errno == ENXIO || errno == ELOOP) ? -EPROTO : -errno;
                break;
            }
        } else {
            e = -errno;
            break;
        }
    }
    if (fd >= 0)
        t->fd = fd;
    pthread_mutex_unlock(&g_handles_lock);
    return fd >= 0 ? 0 : (e ? e : -EAGAIN);
}

static void close_handle_fd(int *fdp)
{
    pthread_mutex_lock(&g_handles_lock);
    if (*fdp >= 0)
        close(*fdp);
    *fdp = -1;
    pthread_mutex_unlock(&g_handles_lock);
}

/* May LK (an existing lock file) serve the segment S? Its owner must be
 * someone who may write the segment (else it was planted by a reader, who
 * kept a descriptor to it: -EACCES, like a squatted table name), and it must
 * not be open to anyone who may not (a mode we own and can narrow is
 * narrowed). */
static int lock_file_trusted(int fd, const struct stat *lk, const struct stat *s)
{
    if (!S_ISREG(lk->st_mode))
        return -EPROTO;
    uid_t me = geteuid();
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

/* The first-opener protocol of a read-write open (see the top of this file),
 * bounded: the init lock is polled until DEADLINE (monotonic ms). Opens the
 * segment into t->sfd and fills *HH and *SIZE with a READY header. */
static int init_or_attach(shmlease_table *t, const shmlease_options *o, uint32_t mode, uint32_t capacity,
                          uint64_t deadline, struct shm_header *hh, uint64_t *size)
{
    int create = !(o->flags & SHMLEASE_OPEN_NOCREATE);
    char spath[PATH_LEN], sfspath[PATH_LEN];
    shm_path(spath, sizeof spath, t->name);
    snprintf(sfspath, sizeof sfspath, SHM_DIR "/shmlease.%s", t->name);
    struct stat lk;
    int rc;
    for (int round = 0;; round++) {
        if (round >= 100)
            return -EAGAIN;
        /* The lock file's mode follows the segment's (the mode asked, when
         * there is no segment yet). */
        struct stat sst;
        mode_t smode = mode;
        if (lstat(sfspath, &sst) == 0) {
            if (S_ISREG(sst.st_mode))
                smode = sst.st_mode & 0777;
        } else if (errno == ENOENT && !create) {
            return -ENOENT;
        }
        rc = open_lock_file(t, shmlease__lk_mode(smode));
        if (rc)
            return rc;
        rc = init_lock_until(t->fd, deadline);
        if (rc)
            return rc;
        if (lock_file_linked(t->fd, t->name, &lk))
            break;
        /* Unlinked (shmlease_unlink) before we got the lock: start over. */
        close_handle_fd(&t->fd);
    }
    SHMLEASE_FAULT("init.lock_file");

    /* We hold the init lock on the lock file linked under the name. */
    int created = 0;
    pthread_mutex_lock(&g_handles_lock);
    int fd = open_fd(spath, o, mode, &created);
    if (fd >= 0)
        t->sfd = fd;
    pthread_mutex_unlock(&g_handles_lock);
    if (fd < 0) {
        if (fd == -ENOENT)
            unlink_lock_file(t->name, &lk);   /* no segment: a stale lock file */
        rc = fd;
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    rc = -EPROTO;                      /* a FIFO, a directory...: not a table */
    if (!S_ISREG(st.st_mode))
        goto out;
    t->ino = st.st_ino;
    t->dev = st.st_dev;
    t->lk_ino = lk.st_ino;
    t->lk_dev = lk.st_dev;
    /* A table of another user is not used unless the caller asked to share
     * (PITFALLS 15): a squatter cannot capture our leases. */
    rc = -EACCES;
    if (!created && st.st_uid != geteuid() && !(mode & 077))
        goto out;
    rc = lock_file_trusted(t->fd, &lk, &st);
    if (rc)
        goto out;
    rc = read_header(fd, hh, size);
    if (rc == 0 && hh->init_state != INIT_STATE_READY && !half_built(fd, hh, *size))
        rc = -EPROTO;                  /* not ours: never write to it */
    if (rc == 0 && hh->init_state != INIT_STATE_READY) {
        uint64_t now = o->clock_ms ? o->clock_ms(o->clock_ctx) : shmlease__sys_clock_ms(NULL);
        rc = initialise(fd, capacity, now, created, &lk);
        if (rc == 0)
            rc = read_header(fd, hh, size);
        if (rc == -ENOSPC && created) {
            shm_unlink(spath);
            unlink_lock_file(t->name, &lk);
        }
    }
out:
    ofd_lock(t->fd, F_UNLCK, INIT_LOCK_OFF, 0);
    return rc;
}

/* A read-only open never locks and never creates: waits a little for READY,
 * else -EPROTO. */
static int attach_readonly(int fd, struct shm_header *hh, uint64_t *size)
{
    for (int i = 0;; i++) {
        int rc = read_header(fd, hh, size);
        if (rc)
            return rc;
        if (__atomic_load_n(&hh->init_state, __ATOMIC_ACQUIRE) == INIT_STATE_READY)
            return 0;
        if (i >= 50)
            return -EPROTO;
        sleep_ms(2);
    }
}

/* A read-only handle asks liveness of the lock file if it may open it (read
 * only), and only if it is the one the header names; else it reads
 * /proc/locks (registry.c). */
static void open_lock_file_readonly(shmlease_table *t)
{
    pthread_mutex_lock(&g_handles_lock);
    int fd = open_lock_same_by_name(t->name, 1, t->lk_ino, t->lk_dev);
    if (fd >= 0)
        t->fd = fd;
    pthread_mutex_unlock(&g_handles_lock);
}

static int open_readonly(shmlease_table *t, const shmlease_options *o, struct shm_header *hh, uint64_t *size)
{
    char path[PATH_LEN];
    shm_path(path, sizeof path, t->name);
    int created = 0;
    pthread_mutex_lock(&g_handles_lock);
    int fd = open_fd(path, o, 0, &created);
    if (fd >= 0)
        t->sfd = fd;
    pthread_mutex_unlock(&g_handles_lock);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;
    t->ino = st.st_ino;
    t->dev = st.st_dev;
    return attach_readonly(fd, hh, size);
}

/* Monotonic clocks agree only within one boot and one time namespace: a
 * writer on another clock would read every deadline wrong. */
static int same_clock(const struct shm_header *hh)
{
    uint8_t boot[16];
    shmlease__boot_id(boot);
    return hh->timens_ino == shmlease__self()->timens && memcmp(hh->boot_id, boot, 16) == 0;
}

/* Everything shmlease_open does once T is allocated and listed. */
static int attach(shmlease_table *t, const shmlease_options *o, uint32_t mode, uint32_t capacity)
{
    uint64_t deadline = mono_ms() + (o->open_timeout_ms ? o->open_timeout_ms : DEFAULT_OPEN_TIMEOUT_MS);
    struct shm_header hh;
    uint64_t size;
    int rc = t->readonly ? open_readonly(t, o, &hh, &size)
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
    close_handle_fd(&t->sfd);         /* the mapping is all we need of it */
    if (t->readonly) {
        t->lk_ino = (ino_t)hh.lock_ino;
        t->lk_dev = (dev_t)hh.lock_dev;
        open_lock_file_readonly(t);
    }
    t->my_pidns = shmlease__self()->pidns;
    if (!t->readonly) {
        uint64_t now = mono_ms();
        rc = shmlease__ensure_registered(t, deadline > now ? deadline - now : 0);
    }
    return rc;
}

static void handle_free(shmlease_table *t)
{
    pthread_mutex_lock(&g_handles_lock);
    for (shmlease_table **p = &g_handles; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    if (t->fd >= 0)
        close(t->fd);      /* drops our registry lock */
    if (t->sfd >= 0)
        close(t->sfd);
    t->fd = t->sfd = -1;
    pthread_mutex_unlock(&g_handles_lock);
    if (t->map)
        munmap(t->map, t->map_size);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* A handle listed from the start, so that a fork during the open sees every
 * descriptor it makes (see atfork_child). */
static shmlease_table *handle_new(const char *name)
{
    pthread_once(&g_atfork_once, install_atfork);
    shmlease_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->fd = t->sfd = -1;
    t->opening = 1;
    pthread_mutex_init(&t->lock, NULL);
    snprintf(t->name, sizeof t->name, "%s", name);
    pthread_mutex_lock(&g_handles_lock);
    t->next = g_handles;
    g_handles = t;
    pthread_mutex_unlock(&g_handles_lock);
    return t;
}

SHM_API int shmlease_open(const char *name, const shmlease_options *opts, shmlease_table **out)
{
    static const shmlease_options defaults;
    const shmlease_options *o = opts ? opts : &defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    int rc = shmlease__validate_name(name);
    if (rc)
        return rc;
    const uint32_t known = SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_EXCL | SHMLEASE_OPEN_READONLY;
    if ((o->flags & ~known) || o->capacity > SHMLEASE_CAPACITY_MAX || o->mode > 0777)
        return -EINVAL;
    if ((o->flags & SHMLEASE_OPEN_EXCL) && (o->flags & (SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_READONLY)))
        return -EINVAL;
    if (!SHMLEASE_RESERVED_ZERO(o))
        return -EINVAL;              /* asks for what this version does not know */
    uint32_t capacity = o->capacity ? o->capacity : SHMLEASE_DEFAULT_CAPACITY;
    uint32_t mode = o->mode ? o->mode : 0600;

#ifdef SHMLEASE_FAULT_POINTS
    shmlease__fault_from_env();
#endif

    shmlease_table *t = handle_new(name);
    if (!t)
        return -ENOMEM;
    t->readonly = (o->flags & SHMLEASE_OPEN_READONLY) != 0;
    t->clock_ms = o->clock_ms;
    t->clock_ctx = o->clock_ctx;
    t->fake_clock = o->clock_ms != NULL;

    rc = attach(t, o, mode, capacity);
    if (rc) {
        handle_free(t);
        return rc == -EFBIG ? -ENOSPC : rc;
    }
    pthread_mutex_lock(&g_handles_lock);
    t->opening = 0;
    pthread_mutex_unlock(&g_handles_lock);
    *out = t;
    return 0;
}

SHM_API void shmlease_close(shmlease_table *t)
{
    if (!t)
        return;
    if (!t->readonly)
        shmlease__unregister(t);
    handle_free(t);
}

/* How long shmlease_unlink waits for an initialiser to finish before it
 * removes the files anyway. */
#define UNLINK_WAIT_MS 1000

/*
 * Removes the segment, then the lock file, under the init lock (when this
 * process may open the lock file), so that an opener racing with us either
 * finishes first (and its table is then removed as a whole) or finds its lock
 * file unlinked once it gets the lock and starts over with fresh files: never
 * a new segment that names a removed lock file. A missing lock file is fine
 * (and a stale one is removed even when the segment is already gone).
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
    shm_path(path, sizeof path, name);
    lk_name(lpath, sizeof lpath, name);
    /* The lock file's descriptor lives on a listed handle that is "opening",
     * so that a fork meanwhile lets go of it in the child. */
    shmlease_table *t = handle_new(name);
    struct stat lk;
    int locked = 0;
    if (t) {
        pthread_mutex_lock(&g_handles_lock);
        t->fd = shm_open(lpath, O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
        pthread_mutex_unlock(&g_handles_lock);
        locked = t->fd >= 0 && fstat(t->fd, &lk) == 0 && S_ISREG(lk.st_mode) &&
                 init_lock_until(t->fd, mono_ms() + UNLINK_WAIT_MS) == 0;
    }
    rc = shm_unlink(path) != 0 ? -errno : 0;
    if (locked)
        unlink_lock_file(name, &lk);   /* still the file we locked */
    else if (shm_unlink(lpath) != 0 && errno != ENOENT) {
        /* not ours to remove (another user's), or already gone */
    }
    if (t)
        handle_free(t);                /* lets go of the init lock */
    return rc;
}

/* A handle whose lock-file descriptor was lost in a fork child (no /proc):
 * find the lock file again by name, if it is still the same file. 0 or
 * -EBADF. */
int shmlease__reopen_fd(shmlease_table *t)
{
    pthread_mutex_lock(&g_handles_lock);
    int fd = open_lock_same_by_name(t->name, t->readonly, t->lk_ino, t->lk_dev);
    if (fd >= 0)
        t->fd = fd;
    pthread_mutex_unlock(&g_handles_lock);
    return fd < 0 ? -EBADF : 0;
}
