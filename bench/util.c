#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- statistics ----------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double percentile_sorted(const double *v, int n, double p)
{
    if (n <= 0)
        return NAN;
    long rank = (long)ceil(p / 100.0 * n);     /* nearest rank */
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

void summarize(double *v, int n, struct summary *s)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    if (n <= 0) {
        s->median = s->p99 = s->min = s->max = s->mean = NAN;
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    s->mean = sum / n;
    s->min = v[0];
    s->max = v[n - 1];
    s->median = (n % 2) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    s->p99 = percentile_sorted(v, n, 99);
}

/* ---- waiting -------------------------------------------------------------- */

void sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int wait_u32_ge(const uint32_t *p, uint32_t v, long timeout_ms)
{
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (__atomic_load_n(p, __ATOMIC_ACQUIRE) < v) {
        if (now_ns() > deadline)
            return -1;
        sleep_us(20);
    }
    return 0;
}

char proc_state(pid_t pid)
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
    char *rp = strrchr(buf, ')');           /* comm may hold spaces and ')' */
    if (!rp || rp[1] != ' ')
        return 0;
    return rp[2];
}

int wait_blocked(pid_t pid, long timeout_ms)
{
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        char s = proc_state(pid);
        if (s == 'S' || s == 'D')
            return 0;
        if (s == 0 || s == 'Z' || now_ns() > deadline)
            return -1;
        sleep_us(20);
    }
}

/* ---- processes and cleanup ------------------------------------------------ */

#define MAX_CLEAN 32
#define MAX_KIDS  64

static pid_t g_main_pid;
static volatile sig_atomic_t g_cleaning;
static pid_t g_server_pid;
static pid_t g_kids[MAX_KIDS];
static char  g_shm[MAX_CLEAN][128];  static int g_nshm;
static char  g_sem[MAX_CLEAN][128];  static int g_nsem;
static char  g_file[MAX_CLEAN][256]; static int g_nfile;
static char  g_dir[MAX_CLEAN][256];  static int g_ndir;

int in_child(void) { return getpid() != g_main_pid; }

static void kids_add(pid_t p)
{
    for (int i = 0; i < MAX_KIDS; i++)
        if (g_kids[i] == 0) { g_kids[i] = p; return; }
}
static void kids_del(pid_t p)
{
    for (int i = 0; i < MAX_KIDS; i++)
        if (g_kids[i] == p) { g_kids[i] = 0; return; }
}

void cleanup_run(void)
{
    if (getpid() != g_main_pid || g_cleaning)
        return;
    g_cleaning = 1;
    for (int i = 0; i < MAX_KIDS; i++)
        if (g_kids[i] > 0) {
            kill(g_kids[i], SIGKILL);
            waitpid(g_kids[i], NULL, 0);
            g_kids[i] = 0;
        }
    if (g_server_pid > 0) {
        kill(g_server_pid, SIGKILL);
        waitpid(g_server_pid, NULL, 0);
        g_server_pid = 0;
    }
    for (int i = 0; i < g_nshm; i++)
        shmlease_unlink(g_shm[i]);
    for (int i = 0; i < g_nsem; i++)
        sem_unlink(g_sem[i]);
    for (int i = 0; i < g_nfile; i++)
        unlink(g_file[i]);
    for (int i = g_ndir - 1; i >= 0; i--)
        rmdir(g_dir[i]);
    g_nshm = g_nsem = g_nfile = g_ndir = 0;
}

static void on_signal(int sig)
{
    cleanup_run();
    signal(sig, SIG_DFL);
    raise(sig);
}

static const int g_sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };

void cleanup_init(void)
{
    g_main_pid = getpid();
    atexit(cleanup_run);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof g_sigs / sizeof g_sigs[0]; i++)
        sigaction(g_sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

#define ADD(arr, n, s) do { if ((n) < MAX_CLEAN) { snprintf(arr[n], sizeof arr[n], "%s", (s)); (n)++; } } while (0)
void cleanup_add_shm(const char *s)  { ADD(g_shm, g_nshm, s); }
void cleanup_add_sem(const char *s)  { ADD(g_sem, g_nsem, s); }
void cleanup_add_file(const char *s) { ADD(g_file, g_nfile, s); }
void cleanup_add_dir(const char *s)  { ADD(g_dir, g_ndir, s); }
void cleanup_set_server(pid_t pid)   { g_server_pid = pid; }

pid_t spawn(int (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* a child: default signal dispositions, die with the bench */
        for (size_t i = 0; i < sizeof g_sigs / sizeof g_sigs[0]; i++)
            signal(g_sigs[i], SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != g_main_pid)
            _exit(99);
        int rc = fn(arg);
        _exit(rc & 0xff);
    }
    kids_add(pid);
    return pid;
}

int wait_child(pid_t pid, long timeout_ms, int *status)
{
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            kids_del(pid);
            if (status)
                *status = st;
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            kids_del(pid);
            if (status)
                *status = -1;
            return 0;
        }
        if (now_ns() > deadline)
            return -1;
        sleep_us(200);
    }
}

void kill_child(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    kids_del(pid);
}

void *shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
