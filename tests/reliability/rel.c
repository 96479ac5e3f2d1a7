#include "rel.h"

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#define MAX_NAMES   64
#define MAX_HANDLES 64
#define MAX_PIDS    512
#define MAX_MAPS    64

static char names[MAX_NAMES][128];
static int n_names;
static shmlease_table *handles[MAX_HANDLES];
static pid_t pids[MAX_PIDS];
static struct { void *p; size_t len; } maps[MAX_MAPS];
static int n_maps;
static unsigned name_seq;
static mode_t saved_umask;

/* ---- running --------------------------------------------------------------------- */

int rel_setup(void **state)
{
    (void)state;
    saved_umask = umask(022);
    umask(saved_umask);
    alarm(280);
    return 0;
}

int rel_teardown(void **state)
{
    (void)state;
    alarm(0);
    for (int i = 0; i < MAX_PIDS; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            kill(pids[i], SIGCONT);
        }
    for (int i = 0; i < MAX_PIDS; i++)
        if (pids[i] > 0) {
            while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR) {
            }
            pids[i] = 0;
        }
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    for (int i = 0; i < MAX_HANDLES; i++)
        if (handles[i]) {
            shmlease_close(handles[i]);
            handles[i] = NULL;
        }
    for (int i = 0; i < n_names; i++)
        shmlease_unlink(names[i]);
    n_names = 0;
    for (int i = 0; i < n_maps; i++)
        munmap(maps[i].p, maps[i].len);
    n_maps = 0;
    umask(saved_umask);
    return 0;
}

int rel_main(int argc, char **argv, const char *group, const struct CMUnitTest *tests, size_t n)
{
    if (argc > 1 && argv[1][0])
        cmocka_set_test_filter(argv[1]);
    if (argc > 2 && argv[2][0])
        cmocka_set_skip_filter(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *g = strrchr(group, '/');
    return _cmocka_run_group_tests(g ? g + 1 : group, tests, n, NULL, NULL);
}

void rel_note(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("RESULT %s\n", buf);
    fflush(stdout);
    const char *f = getenv("SHMLEASE_RESULTS_FILE");
    if (f && *f) {
        FILE *o = fopen(f, "a");
        if (o) {
            fprintf(o, "%s\n", buf);
            fclose(o);
        }
    }
}

/* ---- names, handles ---------------------------------------------------------------- */

const char *rel_name(const char *tag)
{
    assert_true(n_names < MAX_NAMES);
    char *b = names[n_names++];
    snprintf(b, sizeof names[0], "r%d-%s-%u", (int)getpid(), tag, name_seq++);
    shmlease_unlink(b);
    return b;
}

void rel_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/dev/shm/shmlease.%s", name);
}

shmlease_table *rel_open(const char *name, uint32_t capacity)
{
    shmlease_options o = {.capacity = capacity};
    shmlease_table *t = NULL;
    REL_RC(shmlease_open(name, &o, &t), 0);
    for (int i = 0; i < MAX_HANDLES; i++)
        if (!handles[i]) {
            handles[i] = t;
            return t;
        }
    fail_msg("too many handles");
    return NULL;
}

void rel_forget(shmlease_table *t)
{
    for (int i = 0; i < MAX_HANDLES; i++)
        if (handles[i] == t)
            handles[i] = NULL;
}

shmlease_acquire_opts rel_ao(uint64_t ttl_ms, int64_t wait_ms)
{
    shmlease_acquire_opts o = {.ttl_ms = ttl_ms, .wait_ms = wait_ms};
    return o;
}

int rel_acq(shmlease_table *t, const char *key, uint64_t ttl_ms, int64_t wait_ms, shmlease_lease *l)
{
    shmlease_acquire_opts o = rel_ao(ttl_ms, wait_ms);
    return shmlease_acquire(t, key, &o, l);
}

/* ---- memory, time ---------------------------------------------------------------------- */

void *rel_shared(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    if (n_maps < MAX_MAPS) {
        maps[n_maps].p = p;
        maps[n_maps].len = len;
        n_maps++;
    }
    return p;
}

uint64_t rel_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rel_ms(void) { return rel_ns() / 1000000u; }

void rel_sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void rel_sleep_ms(unsigned ms) { rel_sleep_us(ms * 1000u); }

/* Second field of /proc/thread-self/schedstat: nanoseconds this thread has
 * spent runnable but waiting for a CPU. */
uint64_t rel_run_delay_of(pid_t tid);
uint64_t rel_run_delay_ns(void)
{
    return rel_run_delay_of(0);
}

uint64_t rel_run_delay_of(pid_t tid)
{
    char path[64];
    if (tid > 0)
        snprintf(path, sizeof path, "/proc/%d/schedstat", (int)tid);
    else
        snprintf(path, sizeof path, "/proc/thread-self/schedstat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    unsigned long long cpu = 0, delay = 0;
    if (sscanf(buf, "%llu %llu", &cpu, &delay) != 2)
        return 0;
    return delay;
}

uint64_t rel_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15u;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- processes ----------------------------------------------------------------------- */

void rel_track(pid_t pid)
{
    for (int i = 0; i < MAX_PIDS; i++)
        if (pids[i] == 0) {
            pids[i] = pid;
            return;
        }
}

void rel_untrack(pid_t pid)
{
    for (int i = 0; i < MAX_PIDS; i++)
        if (pids[i] == pid)
            pids[i] = 0;
}

pid_t rel_fork(unsigned alarm_s)
{
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0) {
        rel_track(pid);
        return pid;
    }
    /* cmocka's handlers would longjmp into the runner: restore defaults. */
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM, SIGTERM,
                               SIGINT, SIGUSR1, SIGUSR2, SIGCHLD, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    memset(pids, 0, sizeof pids);
    memset(handles, 0, sizeof handles);
    n_names = 0;
    n_maps = 0;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(99);
    alarm(alarm_s ? alarm_s : 120);
    return 0;
}

int rel_wait(pid_t pid, int timeout_ms)
{
    uint64_t end = rel_ms() + (uint64_t)timeout_ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            rel_untrack(pid);
            return st;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (rel_ms() >= end) {
            kill(pid, SIGKILL);
            kill(pid, SIGCONT);
            waitpid(pid, &st, 0);
            rel_untrack(pid);
            return -1;
        }
        rel_sleep_ms(1);
    }
}

const char *rel_status_str(int st)
{
    static char buf[64];
    if (st == -1)
        snprintf(buf, sizeof buf, "timed out (killed)");
    else if (WIFEXITED(st))
        snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, sizeof buf, "killed by %s", sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
    else
        snprintf(buf, sizeof buf, "status 0x%x", st);
    return buf;
}

void rel_expect_exit0(pid_t pid, int timeout_ms)
{
    int st = rel_wait(pid, timeout_ms);
    if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
        fail_msg("child %d: %s (expected exit 0; see its stderr)", (int)pid, rel_status_str(st));
}

char rel_proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
}

int rel_wait_stopped(pid_t pid, int timeout_ms)
{
    uint64_t end = rel_ms() + (uint64_t)timeout_ms;
    do {
        char s = rel_proc_state(pid);
        if (s == 'T' || s == 't')
            return 1;
        if (s == 0 || s == 'Z')
            return 0;
        rel_sleep_ms(1);
    } while (rel_ms() < end);
    return 0;
}

void rel_child_fail(const char *file, int line, const char *what, long long got, long long want,
                    int values)
{
    if (values)
        fprintf(stderr, "[child %d] %s:%d: %s == %lld (%s), expected %lld (%s)\n", (int)getpid(),
                file, line, what, got, shmlease_errname((int)got), want, shmlease_errname((int)want));
    else
        fprintf(stderr, "[child %d] %s:%d: check failed: %s\n", (int)getpid(), file, line, what);
    fflush(stderr);
    _exit(1);
}

/* ---- pipes ------------------------------------------------------------------------------ */

void rel_chan_init(rel_chan *c)
{
    assert_int_equal(pipe2(c->up, O_CLOEXEC), 0);
    assert_int_equal(pipe2(c->down, O_CLOEXEC), 0);
}

void rel_chan_child(rel_chan *c)
{
    close(c->up[0]);
    close(c->down[1]);
    c->up[0] = c->down[1] = -1;
}

void rel_chan_parent(rel_chan *c)
{
    close(c->up[1]);
    close(c->down[0]);
    c->up[1] = c->down[0] = -1;
}

void rel_chan_close(rel_chan *c)
{
    for (int i = 0; i < 2; i++) {
        if (c->up[i] >= 0)
            close(c->up[i]);
        if (c->down[i] >= 0)
            close(c->down[i]);
        c->up[i] = c->down[i] = -1;
    }
}

static int read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    size_t got = 0;
    uint64_t end = rel_ms() + (uint64_t)timeout_ms;
    while (got < len) {
        int left = (int)(end > rel_ms() ? end - rel_ms() : 0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

void rel_up(rel_chan *c, int64_t v)
{
    CK(write(c->up[1], &v, sizeof v) == (ssize_t)sizeof v);
}

int64_t rel_down(rel_chan *c)
{
    int64_t v;
    CK(read_full(c->down[0], &v, sizeof v, 60000) == 0);
    return v;
}

void rel_send(rel_chan *c, int64_t v)
{
    assert_true(write(c->down[1], &v, sizeof v) == (ssize_t)sizeof v);
}

int rel_recv(rel_chan *c, int64_t *v, int timeout_ms)
{
    return read_full(c->up[0], v, sizeof *v, timeout_ms);
}

/* ---- files -------------------------------------------------------------------------------- */

int rel_file_digest(const char *path, uint64_t *digest, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint64_t h = 1469598103934665603ull, n = 0;
    unsigned char buf[65536];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            h ^= buf[i];
            h *= 1099511628211ull;
        }
        n += (uint64_t)r;
    }
    close(fd);
    *digest = h;
    *size = n;
    return 0;
}

int rel_write_segment(const char *name, void *buf, size_t len)
{
    char lp[256], path[256];
    snprintf(lp, sizeof lp, "/dev/shm/shmlease-lk.%s", name);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) != 0 ? -errno : 0;
    close(fd);
    if (rc)
        return rc;
    if (len >= sizeof(struct shm_header)) {
        struct shm_header h;
        memcpy(&h, buf, sizeof h);
        if (h.magic == SHM_MAGIC) {
            int sum_ok = h.checksum == (uint32_t)shmlease__header_checksum(&h);
            h.lock_ino = (uint64_t)st.st_ino;
            h.lock_dev = (uint64_t)st.st_dev;
            if (sum_ok)
                h.checksum = (uint32_t)shmlease__header_checksum(&h);
            memcpy(buf, &h, sizeof h);
        }
    }
    rel_path(path, sizeof path, name);
    return rel_write_file(path, buf, len, 0600);
}

int rel_write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    fchmod(fd, mode);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, (const char *)buf + done, len - done);
        if (w <= 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        done += (size_t)w;
    }
    close(fd);
    return 0;
}

void *rel_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n ? n : 1);
    size_t got = 0;
    while (b && got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return b;
}

/* ---- table checks ---------------------------------------------------------------------------- */

int rel_check_structure(shmlease_table *t, char *why, size_t whylen)
{
    struct shm_header *h = t->hdr;
    uint32_t cap = t->capacity;
    uint32_t *refs = calloc(cap, sizeof *refs);
    uint8_t *onfree = calloc(cap, 1);
    int rc = -1;
    uint32_t live = 0;
#define BAD(...)                                                                   \
    do {                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                        \
        goto out;                                                                  \
    } while (0)
    if (!refs || !onfree)
        BAD("out of memory");
    if (h->index_seq & 1)
        BAD("index_seq odd (%u): a bucket change was left half-way", h->index_seq);
    if (h->index_intent.op != SHM_INTENT_NONE)
        BAD("index intent %u (entry %u) left behind", h->index_intent.op, h->index_intent.a);
    for (uint32_t b = 0; b < t->nbuckets; b++) {
        uint64_t bw = t->buckets[b];
        if (!bw)
            continue;
        uint32_t ei = bw_entry(bw);
        if (ei >= cap)
            BAD("bucket %u points at entry %u beyond capacity %u", b, ei, cap);
        if (sw_kind(t->entries[ei].state) == SW_RETIRED)
            BAD("bucket %u points at retired entry %u", b, ei);
        if ((bw >> 32) != (t->entries[ei].hash >> 32))
            BAD("bucket %u hash tag differs from entry %u's hash", b, ei);
        refs[ei]++;
    }
    for (uint32_t i = 0; i < cap; i++) {
        struct shm_entry *e = &t->entries[i];
        if (sw_kind(e->state) == SW_RETIRED)
            continue;
        live++;
        if (e->key_seq & 1)
            BAD("entry %u: key_seq odd", i);
        if (e->key_len < 1 || e->key_len > SHMLEASE_KEY_MAX)
            BAD("entry %u: key_len %u", i, e->key_len);
        if (refs[i] != 1)
            BAD("entry %u (key '%.*s') is referenced by %u buckets", i, (int)e->key_len, e->key, refs[i]);
        char key[SHMLEASE_KEY_MAX + 1];
        memcpy(key, e->key, e->key_len);
        key[e->key_len] = 0;
        struct keybuf kb;
        if (shmlease__key_prepare(t, key, &kb) != 0 || kb.hash != e->hash)
            BAD("entry %u: stored hash is not the key's hash", i);
        uint32_t seq;
        long f = shmlease__lookup(t, &kb, &seq);
        if (f != (long)i)
            BAD("entry %u (key '%s'): lookup finds %ld (duplicate key or unreachable)", i, key, f);
    }
    uint32_t nfree = 0;
    for (uint32_t f = h->free_head; f != 0; f = t->entries[f - 1].next_free) {
        if (f - 1 >= cap)
            BAD("free list points beyond capacity (%u)", f);
        if (onfree[f - 1])
            BAD("free list has a cycle at entry %u", f - 1);
        onfree[f - 1] = 1;
        if (sw_kind(t->entries[f - 1].state) != SW_RETIRED)
            BAD("entry %u is on the free list but not retired", f - 1);
        nfree++;
    }
    if (h->live_count != live)
        BAD("live_count %u, but %u entries are not retired", h->live_count, live);
    if (nfree + live != cap)
        BAD("free %u + live %u != capacity %u: an entry is lost", nfree, live, cap);
    rc = 0;
out:
#undef BAD
    free(refs);
    free(onfree);
    return rc;
}

void rel_check_usable(const char *name, const char *const *keys, uint32_t capacity)
{
    shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
    shmlease_table *t = NULL;
    REL_RC(shmlease_open(name, &o, &t), 0);
    shmlease_stats st;
    REL_RC(shmlease_stats_get(t, &st), 0);
    REL_TRUE(st.capacity == capacity, "capacity %u, expected %u", st.capacity, capacity);
    REL_TRUE(st.live_keys <= capacity, "live_keys %u > capacity %u", st.live_keys, capacity);

    /* A first structural change runs any pending recovery (inherited mutex). */
    shmlease_lease probe;
    int rc = rel_acq(t, "usable-probe", 10000, 0, &probe);
    REL_TRUE(rc == 0 || rc == -ENOSPC, "probe acquire: %s", shmlease_errname(rc));
    if (rc == 0)
        REL_RC(shmlease_release(t, &probe), 0);

    char why[256];
    REL_TRUE(rel_check_structure(t, why, sizeof why) == 0, "table structure: %s", why);

    /* Keys left by dead processes: free at once; inspect never fails badly. */
    size_t nk = 0;
    while (keys && keys[nk])
        nk++;
    shmlease_lease *held = calloc(nk + 1, sizeof *held);
    for (size_t i = 0; i < nk; i++) {
        shmlease_info info;
        rc = shmlease_inspect(t, keys[i], &info);
        REL_TRUE(rc == 0 || rc == -ENOENT, "inspect %s: %s", keys[i], shmlease_errname(rc));
        if (rc == 0 && !info.in_grace)
            REL_TRUE(info.holder_alive != 1, "key %s: holder %d reported alive", keys[i], info.holder_pid);
        REL_RC(rel_acq(t, keys[i], 10000, 0, &held[i]), 0);
        REL_RC(shmlease_inspect(t, keys[i], &info), 0);
        REL_TRUE(info.holder_pid == getpid() && info.holder_alive == 1 &&
                 info.fencing_token == held[i].fencing_token,
                 "key %s after acquire: pid %d alive %d token %llu/%llu", keys[i], info.holder_pid,
                 info.holder_alive, (unsigned long long)info.fencing_token,
                 (unsigned long long)held[i].fencing_token);
        if (i > 0)          /* only the first stays held, for the exclusion check */
            REL_RC(shmlease_release(t, &held[i]), 0);
    }

    /* Exclusion with another process, both ways. */
    int p2c[2], c2p[2];
    assert_int_equal(pipe(p2c), 0);
    assert_int_equal(pipe(c2p), 0);
    pid_t pid = rel_fork(60);
    if (pid == 0) {
        close(p2c[1]);
        close(c2p[0]);
        shmlease_table *ct;
        CK_RC(shmlease_open(name, &o, &ct), 0);
        shmlease_lease l;
        if (nk)
            CK_RC(rel_acq(ct, keys[0], 10000, 0, &l), -EBUSY);
        CK_RC(rel_acq(ct, "usable-child", 60000, 0, &l), 0);
        char c = 1;
        CK(write(c2p[1], &c, 1) == 1);
        CK(read(p2c[0], &c, 1) >= 0);     /* until the parent says so (or EOF) */
        _exit(0);                          /* dies holding usable-child */
    }
    close(p2c[0]);
    close(c2p[1]);
    char c;
    REL_TRUE(read(c2p[0], &c, 1) == 1, "usable check child did not report");
    shmlease_lease cl;
    REL_RC(rel_acq(t, "usable-child", 10000, 0, &cl), -EBUSY);
    close(p2c[1]);
    rel_expect_exit0(pid, 20000);
    close(c2p[0]);
    REL_RC(rel_acq(t, "usable-child", 10000, 0, &cl), 0);   /* dead holder: at once */
    REL_RC(shmlease_release(t, &cl), 0);

    if (nk)
        REL_RC(shmlease_release(t, &held[0]), 0);
    free(held);

    /* Capacity exactly right. */
    shmlease_lease *cap = calloc(capacity, sizeof *cap);
    char k[64];
    for (uint32_t i = 0; i < capacity; i++) {
        snprintf(k, sizeof k, "usable-cap-%u", i);
        rc = rel_acq(t, k, 60000, 0, &cap[i]);
        REL_TRUE(rc == 0, "filling to capacity: key %u of %u: %s", i, capacity, shmlease_errname(rc));
    }
    REL_RC(rel_acq(t, "usable-cap-extra", 60000, 0, &cl), -ENOSPC);
    REL_RC(shmlease_release(t, &cap[0]), 0);
    REL_RC(rel_acq(t, "usable-cap-extra", 60000, 0, &cap[0]), 0);
    for (uint32_t i = 0; i < capacity; i++)
        REL_RC(shmlease_release(t, &cap[i]), 0);
    free(cap);
    REL_TRUE(rel_check_structure(t, why, sizeof why) == 0, "table structure at the end: %s", why);
    shmlease_close(t);
}
