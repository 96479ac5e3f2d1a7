#include "testutil.h"

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#define TU_MAX_NAMES   64
#define TU_MAX_HANDLES 64
#define TU_MAX_PIDS    256
#define TU_MAX_MAPS    64
#define TU_MAX_FDS     128

static char   names[TU_MAX_NAMES][256];
static int    n_names;
static shmlease_table *handles[TU_MAX_HANDLES];
static pid_t  pids[TU_MAX_PIDS];
static struct { void *p; size_t len; } maps[TU_MAX_MAPS];
static int    n_maps;
static int    fds[TU_MAX_FDS];
static int    n_fds;
static unsigned name_seq;
static mode_t saved_umask;

/* ---- running ---------------------------------------------------------------- */

int tu_setup(void **state)
{
    (void)state;
    saved_umask = umask(022);
    umask(saved_umask);
    alarm(100);  /* a wedged test kills the program; ctest reports it */
    return 0;
}

int tu_teardown(void **state)
{
    (void)state;
    alarm(0);
    for (int i = 0; i < TU_MAX_PIDS; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            kill(pids[i], SIGCONT);
        }
    }
    for (int i = 0; i < TU_MAX_PIDS; i++) {
        if (pids[i] > 0) {
            while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR) {
            }
            pids[i] = 0;
        }
    }
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    for (int i = 0; i < TU_MAX_HANDLES; i++) {
        if (handles[i]) {
            shmlease_close(handles[i]);
            handles[i] = NULL;
        }
    }
    for (int i = 0; i < n_names; i++)
        shmlease_unlink(names[i]);
    n_names = 0;
    for (int i = 0; i < n_fds; i++)
        close(fds[i]);
    n_fds = 0;
    for (int i = 0; i < n_maps; i++)
        munmap(maps[i].p, maps[i].len);
    n_maps = 0;
    umask(saved_umask);
    return 0;
}

int tu_main(int argc, char **argv, const char *group, const struct CMUnitTest *tests, size_t n)
{
    if (argc > 1 && argv[1][0])
        cmocka_set_test_filter(argv[1]);
    if (argc > 2 && argv[2][0])
        cmocka_set_skip_filter(argv[2]);
    /* Orphaned grandchildren come back to us, so tests can reap and kill them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

void tu_fault_arm(const char *point, int action, unsigned hit)
{
#if SHMLEASE_HAVE_FAULT_POINTS
    shmlease__fault_arm(point, action, hit);
#else
    (void)point;
    (void)action;
    (void)hit;
#endif
}

/* ---- names, handles ----------------------------------------------------------- */

void tu_unlink_later(const char *name)
{
    if (n_names < TU_MAX_NAMES) {
        snprintf(names[n_names], sizeof names[n_names], "%s", name);
        n_names++;
    }
}

const char *tu_name(const char *tag)
{
    static char buf[TU_MAX_NAMES][256];
    static int next;
    char *b = buf[next++ % TU_MAX_NAMES];
    snprintf(b, 256, "t%ld-%s-%u", (long)getpid(), tag, name_seq++);
    for (char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
            *p = '_';
    shmlease_unlink(b); /* a leftover from a crashed run with a recycled pid */
    tu_unlink_later(b);
    return b;
}

void tu_shm_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/dev/shm/shmlease.%s", name);
}

int tu_shm_exists(const char *name)
{
    char p[512];
    struct stat st;
    tu_shm_path(p, sizeof p, name);
    return lstat(p, &st) == 0;
}

shmlease_table *tu_open(const char *name, const shmlease_options *o)
{
    shmlease_table *t = NULL;
    int rc = shmlease_open(name, o, &t);
    if (rc != 0)
        fail_msg("shmlease_open(%s) returned %d (%s)", name, rc, shmlease_errname(rc));
    assert_non_null(t);
    for (int i = 0; i < TU_MAX_HANDLES; i++) {
        if (!handles[i]) {
            handles[i] = t;
            break;
        }
    }
    return t;
}

shmlease_table *tu_open_cap(const char *name, uint32_t capacity)
{
    shmlease_options o = { 0 };
    o.capacity = capacity;
    return tu_open(name, &o);
}

void tu_close(shmlease_table *t)
{
    for (int i = 0; i < TU_MAX_HANDLES; i++)
        if (handles[i] == t)
            handles[i] = NULL;
    shmlease_close(t);
}

/* ---- leases ------------------------------------------------------------------ */

shmlease_acquire_opts tu_aopts(uint64_t ttl_ms, int64_t wait_ms)
{
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = ttl_ms;
    o.wait_ms = wait_ms;
    return o;
}

int tu_acquire(shmlease_table *t, const char *key, uint64_t ttl_ms, int64_t wait_ms,
               shmlease_lease *out)
{
    shmlease_acquire_opts o = tu_aopts(ttl_ms, wait_ms);
    return shmlease_acquire(t, key, &o, out);
}

shmlease_stats tu_stats(shmlease_table *t)
{
    shmlease_stats s;
    memset(&s, 0, sizeof s);
    int rc = shmlease_stats_get(t, &s);
    if (rc != 0)
        fail_msg("shmlease_stats_get returned %d (%s)", rc, shmlease_errname(rc));
    return s;
}

/* ---- clock ----------------------------------------------------------------------- */

tu_clock *tu_clock_new(uint64_t start_ms)
{
    tu_clock *c = tu_shared(sizeof *c);
    atomic_store(&c->now_ms, start_ms);
    return c;
}

uint64_t tu_clock_read(void *ctx)
{
    return atomic_load(&((tu_clock *)ctx)->now_ms);
}

void tu_clock_advance(tu_clock *c, uint64_t delta_ms)
{
    atomic_fetch_add(&c->now_ms, delta_ms);
}

uint64_t tu_clock_now(tu_clock *c)
{
    return atomic_load(&c->now_ms);
}

shmlease_options tu_opts_clock(tu_clock *c, uint32_t capacity)
{
    shmlease_options o;
    memset(&o, 0, sizeof o);
    o.capacity = capacity;
    o.clock_ms = tu_clock_read;
    o.clock_ctx = c;
    return o;
}

/* ---- shared memory ------------------------------------------------------------- */

void *tu_shared(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        fail_msg("mmap(%zu): %s", len, strerror(errno));
    if (n_maps < TU_MAX_MAPS) {
        maps[n_maps].p = p;
        maps[n_maps].len = len;
        n_maps++;
    }
    return p;
}

/* ---- time ------------------------------------------------------------------------- */

uint64_t tu_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t tu_mono_ms(void)
{
    return tu_mono_us() / 1000u;
}

void tu_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---- processes ------------------------------------------------------------------ */

static void reg_pid(pid_t p)
{
    for (int i = 0; i < TU_MAX_PIDS; i++) {
        if (pids[i] == 0) {
            pids[i] = p;
            return;
        }
    }
}

static void unreg_pid(pid_t p)
{
    for (int i = 0; i < TU_MAX_PIDS; i++)
        if (pids[i] == p)
            pids[i] = 0;
}

pid_t tu_fork(void)
{
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p < 0)
        fail_msg("fork: %s", strerror(errno));
    if (p > 0) {
        reg_pid(p);
        return p;
    }
    /* child: never run cmocka code again */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGSYS, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(98);
    alarm(90);
    memset(pids, 0, sizeof pids);
    memset(handles, 0, sizeof handles);
    n_names = 0;
    n_maps = 0;
    n_fds = 0;
    return 0;
}

void tu_adopt(pid_t pid)
{
    if (pid > 0)
        reg_pid(pid);
}

int tu_wait(pid_t pid, int timeout_ms)
{
    uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            unreg_pid(pid);
            return status;
        }
        if (r < 0 && errno != EINTR) {
            unreg_pid(pid);
            return -1;
        }
        if (tu_mono_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            unreg_pid(pid);
            return -1;
        }
        tu_sleep_ms(1);
    }
}

static void describe(int st, char *buf, size_t len)
{
    if (st == -1)
        snprintf(buf, len, "timed out (killed)");
    else if (WIFEXITED(st))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, len, "status 0x%x", st);
}

void tu_expect_exit0(pid_t pid)
{
    int st = tu_wait(pid, 60000);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char d[128];
        describe(st, d, sizeof d);
        fail_msg("child %ld %s, expected a clean exit (see its message above)", (long)pid, d);
    }
}

void tu_expect_signal(pid_t pid, int sig)
{
    int st = tu_wait(pid, 60000);
    if (st == -1 || !WIFSIGNALED(st) || WTERMSIG(st) != sig) {
        char d[128];
        describe(st, d, sizeof d);
        fail_msg("child %ld %s, expected death by signal %d (%s)", (long)pid, d, sig,
                 strsignal(sig));
    }
}

void tu_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    unreg_pid(pid);
}

int tu_wait_stopped(pid_t pid, int timeout_ms)
{
    uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WSTOPPED | WNOHANG) == 0 && si.si_pid == pid)
            return si.si_code == CLD_STOPPED;
        if (tu_mono_ms() >= deadline)
            return 0;
        tu_sleep_ms(1);
    }
}

int tu_wait_zombie(pid_t pid, int timeout_ms)
{
    uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
            return 1;
        if (tu_mono_ms() >= deadline)
            return 0;
        tu_sleep_ms(1);
    }
}

void tu_child_fail(const char *file, int line, const char *what, long long got,
                   long long want, int with_values)
{
    if (with_values)
        fprintf(stderr, "CHILD %ld FAILED %s:%d: %s returned %lld (%s), expected %lld (%s)\n",
                (long)getpid(), file, line, what, got, shmlease_errname((int)got), want,
                shmlease_errname((int)want));
    else
        fprintf(stderr, "CHILD %ld FAILED %s:%d: %s\n", (long)getpid(), file, line, what);
    fflush(stderr);
    _exit(99);
}

/* ---- channels ------------------------------------------------------------------- */

static void reg_fd(int fd)
{
    if (n_fds < TU_MAX_FDS)
        fds[n_fds++] = fd;
}

static void unreg_close(int *fd)
{
    for (int i = 0; i < n_fds; i++)
        if (fds[i] == *fd)
            fds[i] = fds[--n_fds];
    close(*fd);
    *fd = -1;
}

void tu_chan_init(tu_chan *c)
{
    if (pipe(c->up) < 0 || pipe(c->down) < 0)
        fail_msg("pipe: %s", strerror(errno));
    reg_fd(c->up[0]);
    reg_fd(c->up[1]);
    reg_fd(c->down[0]);
    reg_fd(c->down[1]);
    c->pid = 0;
}

void tu_chan_child(tu_chan *c)
{
    close(c->up[0]);
    close(c->down[1]);
}

void tu_chan_parent(tu_chan *c, pid_t pid)
{
    unreg_close(&c->up[1]);
    unreg_close(&c->down[0]);
    c->pid = pid;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* 0, -ETIMEDOUT, -EPIPE (EOF); checks WATCH (if > 0) for having ended. */
static int read_val(int fd, int64_t *v, int timeout_ms, pid_t watch)
{
    uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        int r = poll(&pfd, 1, 50);
        if (r > 0) {
            ssize_t n = read(fd, v, sizeof *v);
            if (n == (ssize_t)sizeof *v)
                return 0;
            if (n < 0 && errno == EINTR)
                continue;
            return -EPIPE;
        }
        if (watch > 0) {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t)watch, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                si.si_pid == watch) {
                /* ended: take what it wrote before it went */
                pfd.revents = 0;
                if (poll(&pfd, 1, 0) > 0 && read(fd, v, sizeof *v) == (ssize_t)sizeof *v)
                    return 0;
                return -ECHILD;
            }
        }
        if (tu_mono_ms() >= deadline)
            return -ETIMEDOUT;
    }
}

void tu_up(tu_chan *c, int64_t v)
{
    CK(write_all(c->up[1], &v, sizeof v) == 0);
}

int64_t tu_down_recv(tu_chan *c)
{
    int64_t v = 0;
    CK(read_val(c->down[0], &v, 60000, 0) == 0);
    return v;
}

void tu_down(tu_chan *c, int64_t v)
{
    if (write_all(c->down[1], &v, sizeof v) != 0)
        fail_msg("write to child %ld failed (child gone?)", (long)c->pid);
}

int tu_up_try(tu_chan *c, int64_t *v, int timeout_ms)
{
    return read_val(c->up[0], v, timeout_ms, c->pid);
}

int64_t tu_up_recv(tu_chan *c, int timeout_ms)
{
    int64_t v = 0;
    int rc = tu_up_try(c, &v, timeout_ms);
    if (rc == -ECHILD) {
        int st = tu_wait(c->pid, 1000);
        char d[128];
        describe(st, d, sizeof d);
        fail_msg("child %ld ended before reporting: %s", (long)c->pid, d);
    }
    if (rc != 0)
        fail_msg("no report from child %ld within %d ms (%s)", (long)c->pid, timeout_ms,
                 rc == -ETIMEDOUT ? "timeout" : "pipe closed");
    return v;
}

/* ---- files ------------------------------------------------------------------- */

unsigned char *tu_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = malloc(n ? n : 1);
    size_t got = 0;
    while (b && got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (b && got != n) {
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

void tu_write_file(const char *path, const void *buf, size_t len, unsigned mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        fail_msg("open(%s): %s", path, strerror(errno));
    fchmod(fd, mode);
    if (write_all(fd, buf, len) != 0)
        fail_msg("write(%s): %s", path, strerror(errno));
    close(fd);
}
