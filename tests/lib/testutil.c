#include "testutil.h"
#include "liveness.h"

#include <sys/resource.h>

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#define TU_MAX_NAMES   256
#define TU_MAX_HANDLES 64
#define TU_MAX_PIDS    512
#define TU_MAX_MAPS    64
#define TU_MAX_FDS     128

/* What the teardown cleans up: table names, handles, children, mappings,
 * channel descriptors. */
static char   names[TU_MAX_NAMES][256];   /* longer than any valid table name */
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

static int setup_with_alarm(unsigned alarm_s)
{
    saved_umask = umask(022);
    umask(saved_umask);
    alarm(alarm_s);  /* a wedged test kills the program; ctest reports it */
    return 0;
}

int tu_setup(void **state)
{
    (void)state;
    return setup_with_alarm(100);
}

int tu_setup_slow(void **state)
{
    (void)state;
    return setup_with_alarm(280);
}

/* Removes whatever a test left under table name NAME: the table
 * (shmlease_unlink), and what shmlease_unlink rightly refuses to remove
 * (garbage, empty files, directories, FIFOs a test put there). */
static void remove_name(const char *name)
{
    shmlease_unlink(name);
    char p[300];
    snprintf(p, sizeof p, "/dev/shm/shmlease.%s", name);
    if (unlink(p) != 0 && errno == EISDIR)
        rmdir(p);
    snprintf(p, sizeof p, "/dev/shm/shmlease-lk.%s", name);
    if (unlink(p) != 0 && errno == EISDIR)
        rmdir(p);
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
        remove_name(names[i]);
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
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *base = strrchr(group, '/');
    return _cmocka_run_group_tests(base ? base + 1 : group, tests, n, NULL, NULL);
}

void tu_note(const char *fmt, ...)
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

/* The registered copy of NAME: valid until the teardown. */
static char *register_name(const char *name)
{
    if (n_names >= TU_MAX_NAMES)
        fail_msg("more than %d table names in one test", TU_MAX_NAMES);
    if (strlen(name) >= sizeof names[0])
        fail_msg("table name of %zu bytes: too long to be unlinked at teardown", strlen(name));
    char *b = names[n_names++];
    snprintf(b, sizeof names[0], "%s", name);
    return b;
}

void tu_unlink_later(const char *name)
{
    register_name(name);
}

const char *tu_name(const char *tag)
{
    char b[sizeof names[0]];
    snprintf(b, sizeof b, "t%ld-%s-%u", (long)getpid(), tag, name_seq++);
    for (char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
            *p = '_';
    remove_name(b); /* a leftover from a crashed run with a recycled pid */
    return register_name(b);
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
            return t;
        }
    }
    fail_msg("more than %d open handles in one test", TU_MAX_HANDLES);
    return NULL;
}

shmlease_table *tu_open_cap(const char *name, uint32_t capacity)
{
    shmlease_options o = { 0 };
    o.capacity = capacity;
    return tu_open(name, &o);
}

void tu_forget(shmlease_table *t)
{
    for (int i = 0; i < TU_MAX_HANDLES; i++)
        if (handles[i] == t)
            handles[i] = NULL;
}

shmlease_table **tu_fill_registry(const char *name, int leave, int *n)
{
    struct rlimit rl;
    const rlim_t need = SHMLEASE_HANDLES_MAX + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
            print_message("[  SKIPPED ] the hard RLIMIT_NOFILE (%llu) is below the %llu "
                          "descriptors a full registry needs\n",
                          (unsigned long long)rl.rlim_max, (unsigned long long)need);
            skip();
        }
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fail_msg("setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)need, strerror(errno));
    }
    shmlease_table **h = calloc(SHMLEASE_HANDLES_MAX, sizeof *h);
    if (!h)
        fail_msg("out of memory");
    int k = 0, rc = 0;
    while (k < SHMLEASE_HANDLES_MAX && (rc = shmlease_open(name, NULL, &h[k])) == 0)
        k++;
    if (k < SHMLEASE_HANDLES_MAX && rc != -EUSERS)   /* all ours, or full */
        fail_msg("filling the registry: open #%d returned %d (%s), expected -EUSERS", k, rc,
                 shmlease_errname(rc));
    if (k < leave)
        fail_msg("filling the registry: %d slot(s) free, %d to leave", k, leave);
    while (leave-- > 0)
        shmlease_close(h[--k]);   /* the slots left */
    *n = k;
    return h;
}

void tu_unfill_registry(shmlease_table **h, int n)
{
    for (int i = 0; i < n; i++)
        shmlease_close(h[i]);
    free(h);
}

void tu_close(shmlease_table *t)
{
    tu_forget(t);
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

uint64_t tu_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tu_mono_us(void)
{
    return tu_mono_ns() / 1000u;
}

uint64_t tu_mono_ms(void)
{
    return tu_mono_ns() / 1000000u;
}

void tu_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

void tu_sleep_us(unsigned us)
{
    struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Second field of /proc/<tid>/schedstat: nanoseconds spent runnable but
 * waiting for a CPU. */
uint64_t tu_run_delay_of(pid_t tid)
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

uint64_t tu_run_delay_ns(void)
{
    return tu_run_delay_of(0);
}

uint64_t tu_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15u;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- processes ------------------------------------------------------------------ */

void tu_track(pid_t p)
{
    for (int i = 0; i < TU_MAX_PIDS; i++) {
        if (pids[i] == 0) {
            pids[i] = p;
            return;
        }
    }
    fail_msg("more than %d processes registered in one test", TU_MAX_PIDS);
}

void tu_untrack(pid_t p)
{
    for (int i = 0; i < TU_MAX_PIDS; i++)
        if (pids[i] == p)
            pids[i] = 0;
}

pid_t tu_fork_alarm(unsigned alarm_s)
{
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p < 0)
        fail_msg("fork: %s", strerror(errno));
    if (p > 0) {
        tu_track(p);
        return p;
    }
    /* child: never run cmocka code again (its handlers would longjmp into
     * the runner), nor the test's own handlers */
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGSYS, SIGABRT, SIGALRM,
                                SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCHLD };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(98);
    alarm(alarm_s);
    memset(pids, 0, sizeof pids);
    memset(handles, 0, sizeof handles);
    n_names = 0;
    n_maps = 0;
    n_fds = 0;
    return 0;
}

pid_t tu_fork(void)
{
    return tu_fork_alarm(90);
}

void tu_death_settle(void)
{
    tu_sleep_ms(VERDICT_MS + 1);
}

int tu_wait(pid_t pid, int timeout_ms)
{
    uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            tu_untrack(pid);
            tu_death_settle();
            return status;
        }
        if (r < 0 && errno != EINTR) {
            tu_untrack(pid);
            return -1;
        }
        if (tu_mono_ms() >= deadline) {
            kill(pid, SIGKILL);
            kill(pid, SIGCONT);
            waitpid(pid, NULL, 0);
            tu_untrack(pid);
            return -1;
        }
        tu_sleep_ms(1);
    }
}

const char *tu_status_str(int st)
{
    static _Thread_local char buf[96];
    if (st == -1) {
        snprintf(buf, sizeof buf, "timed out (killed)");
    } else if (WIFEXITED(st)) {
        snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
    } else if (WIFSIGNALED(st)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(st));
        snprintf(buf, sizeof buf, "killed by SIG%s (%s)", abbrev ? abbrev : "?",
                 strsignal(WTERMSIG(st)));
    } else {
        snprintf(buf, sizeof buf, "status 0x%x", st);
    }
    return buf;
}

void tu_expect_exit0_within(pid_t pid, int timeout_ms)
{
    int st = tu_wait(pid, timeout_ms);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child %ld: %s, expected exit 0 (see its message above)", (long)pid,
                 tu_status_str(st));
}

void tu_expect_exit0(pid_t pid)
{
    tu_expect_exit0_within(pid, 60000);
}

void tu_expect_signal(pid_t pid, int sig)
{
    int st = tu_wait(pid, 60000);
    if (st == -1 || !WIFSIGNALED(st) || WTERMSIG(st) != sig)
        fail_msg("child %ld: %s, expected death by signal %d (%s)", (long)pid,
                 tu_status_str(st), sig, strsignal(sig));
}

void tu_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    tu_untrack(pid);
    tu_death_settle();
}

int tu_proc_stat_read(pid_t pid, tu_proc_stat *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    /* "pid (comm) state ...": comm may hold ") (" and spaces, so the fields
     * start after the LAST ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return -1;
    memset(out, 0, sizeof *out);
    out->state = p[2];
    p += 2;
    for (int field = 3; *p; field++) {
        if (field == 14)
            out->utime = strtoull(p, NULL, 10);
        else if (field == 15)
            out->stime = strtoull(p, NULL, 10);
        else if (field == 22) {
            out->starttime = strtoull(p, NULL, 10);
            return 0;
        }
        p = strchr(p, ' ');
        if (!p)
            break;
        p++;
    }
    return -1;   /* cut short: not a stat line */
}

char tu_proc_state(pid_t pid)
{
    tu_proc_stat ps;
    return tu_proc_stat_read(pid, &ps) == 0 ? ps.state : 0;
}

int tu_wait_stopped(pid_t pid, int timeout_ms)
{
    uint64_t deadline = tu_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char s = tu_proc_state(pid);
        if (s == 'T' || s == 't')
            return 1;
        if (s == 0 || s == 'Z' || tu_mono_ms() >= deadline)
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
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
            tu_death_settle();
            return 1;
        }
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
    if (*fd < 0)
        return;
    for (int i = 0; i < n_fds; i++)
        if (fds[i] == *fd)
            fds[i] = fds[--n_fds];
    close(*fd);
    *fd = -1;
}

void tu_chan_init(tu_chan *c)
{
    if (pipe2(c->up, O_CLOEXEC) < 0 || pipe2(c->down, O_CLOEXEC) < 0)
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
    c->up[0] = c->down[1] = -1;
}

void tu_chan_parent(tu_chan *c, pid_t pid)
{
    unreg_close(&c->up[1]);
    unreg_close(&c->down[0]);
    c->pid = pid;
}

void tu_chan_close(tu_chan *c)
{
    for (int i = 0; i < 2; i++) {
        unreg_close(&c->up[i]);
        unreg_close(&c->down[i]);
    }
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
    TU_CK(write_all(c->up[1], &v, sizeof v) == 0);
}

int64_t tu_down_recv(tu_chan *c)
{
    int64_t v = 0;
    TU_CK(read_val(c->down[0], &v, 60000, 0) == 0);
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
        fail_msg("child %ld ended before reporting: %s", (long)c->pid, tu_status_str(st));
    }
    if (rc != 0)
        fail_msg("no report from child %ld within %d ms (%s)", (long)c->pid, timeout_ms,
                 rc == -ETIMEDOUT ? "timeout" : "pipe closed");
    return v;
}

/* ---- files ------------------------------------------------------------------- */

void *tu_read_file(const char *path, size_t *len)
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
        if (r < 0 && errno == EINTR)
            continue;
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

int tu_write_file(const char *path, const void *buf, size_t len, unsigned mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return -errno;
    fchmod(fd, (mode_t)mode);
    int rc = write_all(fd, buf, len) != 0 ? -(errno ? errno : EIO) : 0;
    close(fd);
    return rc;
}

int tu_file_digest(const char *path, uint64_t *digest, uint64_t *size)
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
