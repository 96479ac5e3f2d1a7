/*
 * The segment: names, the first-opener protocol, validation, mapping, close,
 * and what happens to handles across fork().
 *
 * First-opener protocol (PITFALLS 13). The races: between shm_open(O_CREAT)
 * and a complete header an attacher can see a 0-byte file or a half-written
 * header; the creator can die half-way. The rule that closes them:
 *
 *   Whoever holds the init lock (an OFD write lock on byte INIT_LOCK_OFF) and
 *   finds init_state != READY initialises the segment from scratch.
 *
 * Every read-write opener takes that lock (blocking) before looking at the
 * header, so nobody attaches to a half-built header: either init_state is
 * READY (stored last, with release) or the opener builds the segment itself.
 * A creator that dies mid-init loses the lock with its life; the next opener
 * finds init_state != READY and starts over (ftruncate to 0 first, so every
 * byte is zero again). A READY segment is never re-initialised, so robust
 * mutexes are initialised exactly once while anyone can be attached
 * (PITFALLS 1). Read-only openers never lock: they wait briefly for READY and
 * otherwise report -EPROTO.
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

uint64_t shmlease__reg_lock_off(const struct shm_header *h, uint32_t idx)
{
    return h->reg_off + (uint64_t)idx * sizeof(struct shm_reg);
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
static int initialise(int fd, uint32_t capacity, uint64_t now_ms, int created)
{
    struct shm_header proto;
    memset(&proto, 0, sizeof proto);
    layout(capacity, &proto);

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
           offsetof(struct shm_header, checksum) - offsetof(struct shm_header, header_size));
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

/* Opens table NAME again by name, if it is still the file INO/DEV (it may
 * have been unlinked and replaced). The descriptor, or a negative code. */
static int open_same_by_name(const char *name, int readonly, ino_t ino, dev_t dev)
{
    char path[SHMLEASE_NAME_MAX + 16];
    shm_path(path, sizeof path, name);
    int fd = shm_open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_ino != ino || st.st_dev != dev) {
        close(fd);
        return -EAGAIN;                /* unlinked and replaced meanwhile */
    }
    return fd;
}

/* A new open file description of the same file as FD (not a dup): through
 * /proc/self/fd, or by name when /proc is missing. */
static int reopen_same_file(int fd, int readonly, const char *name, ino_t ino, dev_t dev)
{
    char path[32];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int nfd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    return nfd >= 0 ? nfd : open_same_by_name(name, readonly, ino, dev);
}

/* ---- fork ----------------------------------------------------------------- */

/*
 * fork() and the registry locks. A child shares every open file description
 * of its parent until its fork handler (below) replaces the handle
 * descriptors, and it runs that handler only once it is first scheduled:
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
        if (t->fd < 0)
            continue;
        if (t->opening) {
            /* Another thread of the parent was opening it; that thread does
             * not exist here, and nobody here has the handle: just let go of
             * the description (it may hold the init lock, or soon a
             * registry lock, on the parent's behalf). */
            close(t->fd);
            t->fd = -1;
            continue;
        }
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

static int map_table(shmlease_table *t, const struct shm_header *hh)
{
    int prot = PROT_READ | (t->readonly ? 0 : PROT_WRITE);
    void *map = mmap(NULL, hh->total_size, prot, MAP_SHARED, t->fd, 0);
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

/* The first-opener protocol of a read-write open (see the top of this
 * file), bounded: the init lock is polled until DEADLINE (monotonic ms).
 * Fills *HH and *SIZE with a READY header. */
static int init_or_attach(shmlease_table *t, const shmlease_options *o, uint32_t capacity, int created,
                          uint64_t deadline, struct shm_header *hh, uint64_t *size)
{
    int fd = t->fd, rc;
    for (unsigned naps = 0;; naps++) {
        rc = ofd_lock(fd, F_WRLCK, INIT_LOCK_OFF, 0);
        if (rc == 0) {
            rc = read_header(fd, hh, size);
            /* A 0-byte file we did not create: its creator is most likely
             * between shm_open and taking the init lock. Give it 100 ms
             * before building the segment ourselves. */
            if (rc || created || *size != 0 || naps >= 50)
                break;
            ofd_lock(fd, F_UNLCK, INIT_LOCK_OFF, 0);
        } else if (rc != -EAGAIN && rc != -EACCES) {
            return rc;
        } else if (mono_ms() >= deadline) {
            return -ETIMEDOUT;         /* an initialiser that is stopped */
        }
        sleep_ms(naps < 10 ? 1 : 2);
    }
    if (rc == 0 && hh->init_state != INIT_STATE_READY && !half_built(fd, hh, *size))
        rc = -EPROTO;                  /* not ours: never write to it */
    if (rc == 0 && hh->init_state != INIT_STATE_READY) {
        uint64_t now = o->clock_ms ? o->clock_ms(o->clock_ctx) : shmlease__sys_clock_ms(NULL);
        rc = initialise(fd, capacity, now, created);
        if (rc == 0)
            rc = read_header(fd, hh, size);
        if (rc == -ENOSPC && created) {
            char path[SHMLEASE_NAME_MAX + 16];
            shm_path(path, sizeof path, t->name);
            shm_unlink(path);
        }
    }
    ofd_lock(fd, F_UNLCK, INIT_LOCK_OFF, 0);
    return rc;
}

/* A read-only open never locks: waits a little for READY, else -EPROTO. */
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

/* Monotonic clocks agree only within one boot and one time namespace: a
 * writer on another clock would read every deadline wrong. */
static int same_clock(const struct shm_header *hh)
{
    uint8_t boot[16];
    shmlease__boot_id(boot);
    return hh->timens_ino == shmlease__self()->timens && memcmp(hh->boot_id, boot, 16) == 0;
}

/* Replaces t->fd by a new open file description of the same file, never
 * mapped, to carry the registry lock: the mapping holds a reference to the
 * description it was made through, and a fork child inherits the mapping, so
 * a lock on that description would outlive the process that took it. */
static int swap_to_lock_fd(shmlease_table *t)
{
    pthread_mutex_lock(&g_handles_lock);
    int lfd = reopen_same_file(t->fd, t->readonly, t->name, t->ino, t->dev);
    if (lfd >= 0) {
        close(t->fd);
        t->fd = lfd;
    }
    pthread_mutex_unlock(&g_handles_lock);
    return lfd < 0 ? lfd : 0;
}

/* Everything shmlease_open does once T is allocated and listed. */
static int attach(shmlease_table *t, const shmlease_options *o, uint32_t mode, uint32_t capacity)
{
    uint64_t deadline = mono_ms() + (o->open_timeout_ms ? o->open_timeout_ms : DEFAULT_OPEN_TIMEOUT_MS);
    char path[SHMLEASE_NAME_MAX + 16];
    shm_path(path, sizeof path, t->name);
    int created = 0;
    pthread_mutex_lock(&g_handles_lock);
    int fd = open_fd(path, o, mode, &created);
    if (fd >= 0)
        t->fd = fd;
    pthread_mutex_unlock(&g_handles_lock);
    if (fd < 0)
        return fd;

    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;                /* a FIFO, a directory...: not a table */
    t->ino = st.st_ino;
    t->dev = st.st_dev;
    /* A table of another user is not used unless the caller asked to share
     * (PITFALLS 15): a squatter cannot capture our leases. */
    if (!t->readonly && !created && st.st_uid != geteuid() && !(mode & 077))
        return -EACCES;

    struct shm_header hh;
    uint64_t size;
    int rc = t->readonly ? attach_readonly(fd, &hh, &size)
                         : init_or_attach(t, o, capacity, created, deadline, &hh, &size);
    if (rc == 0)
        rc = shmlease__check_header(&hh, size);
    if (rc == 0 && !t->readonly && !same_clock(&hh))
        rc = -EXDEV;
    if (rc == 0)
        rc = map_table(t, &hh);
    if (rc == 0)
        rc = swap_to_lock_fd(t);
    t->my_pidns = shmlease__self()->pidns;
    if (rc == 0 && !t->readonly) {
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
    t->fd = -1;
    pthread_mutex_unlock(&g_handles_lock);
    if (t->map)
        munmap(t->map, t->map_size);
    pthread_mutex_destroy(&t->lock);
    free(t);
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
    uint32_t capacity = o->capacity ? o->capacity : SHMLEASE_DEFAULT_CAPACITY;
    uint32_t mode = o->mode ? o->mode : 0600;

    pthread_once(&g_atfork_once, install_atfork);
#ifdef SHMLEASE_FAULT_POINTS
    shmlease__fault_from_env();
#endif

    shmlease_table *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->fd = -1;
    t->opening = 1;
    t->readonly = (o->flags & SHMLEASE_OPEN_READONLY) != 0;
    t->clock_ms = o->clock_ms;
    t->clock_ctx = o->clock_ctx;
    t->fake_clock = o->clock_ms != NULL;
    pthread_mutex_init(&t->lock, NULL);
    snprintf(t->name, sizeof t->name, "%s", name);
    /* Listed from the start, so that a fork during the open sees every
     * descriptor it makes (see atfork_child). */
    pthread_mutex_lock(&g_handles_lock);
    t->next = g_handles;
    g_handles = t;
    pthread_mutex_unlock(&g_handles_lock);

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

SHM_API int shmlease_unlink(const char *name)
{
    int rc = shmlease__validate_name(name);
    if (rc)
        return rc;
    char path[SHMLEASE_NAME_MAX + 16];
    shm_path(path, sizeof path, name);
    if (shm_unlink(path) != 0)
        return -errno;
    return 0;
}

/* A handle whose descriptor was lost in a fork child (no /proc): find the
 * file again by name, if it is still the same file. 0 or -EBADF. */
int shmlease__reopen_fd(shmlease_table *t)
{
    pthread_mutex_lock(&g_handles_lock);
    int fd = open_same_by_name(t->name, t->readonly, t->ino, t->dev);
    if (fd >= 0)
        t->fd = fd;
    pthread_mutex_unlock(&g_handles_lock);
    return fd < 0 ? -EBADF : 0;
}
