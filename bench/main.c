/*
 * shmlease-bench: shmlease beside the locks users would pick instead, in the
 * same run on the same machine. Prints a Markdown report on stdout (progress
 * on stderr), writes one CSV file per scenario to --out DIR, and ends with the
 * goals of issue 4 as PASS/MISS lines computed from this run.
 *
 * Exit status: 0 when the run completed (whatever the goals say), 1 when a
 * lock broke mutual exclusion, a try-acquire took a held lock, a waiter hung
 * or a scenario failed; 2 on a usage or setup error.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- configuration ---------------------------------------------------------- */

static struct cfg {
    int         quick;
    const char *out;
    const char *dump_bin;
    const char *redis_bin;
    int         no_redis;
    unsigned    scenarios;        /* bit i: scenario i */
    int         batches;          /* scenarios 1, 2, 4 */
    double      batch_ms;
    double      warm_ms;
    int         rounds;           /* scenario 3 */
    double      round_s;
    int         wake_samples;     /* scenario 5 */
    int         takeover_samples; /* scenario 6 */
    uint32_t    big_keys;         /* scenario 4: largest level */
} cfg;

static int g_failed;              /* something broke: exit 1 */
static int g_werr;                /* a CSV could not be written */

static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static FILE *csv_open(const char *name, const char *header)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", cfg.out, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        progress("cannot write %s: %s", path, strerror(errno));
        g_werr = 1;
        return NULL;
    }
    fprintf(f, "%s\n", header);
    return f;
}

/* "23.4 ns", "1.27 µs", "3.1 ms" */
static const char *fmt_t(char *buf, size_t n, double ns)
{
    if (isnan(ns))
        snprintf(buf, n, "-");
    else if (isinf(ns))
        snprintf(buf, n, "inf");
    else if (ns < 100)
        snprintf(buf, n, "%.1f ns", ns);
    else if (ns < 10000)
        snprintf(buf, n, "%.0f ns", ns);
    else if (ns < 1e6)
        snprintf(buf, n, "%.1f µs", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, n, "%.2f ms", ns / 1e6);
    else
        snprintf(buf, n, "%.2f s", ns / 1e9);
    return buf;
}
#define T(ns) fmt_t((char[32]){0}, 32, (ns))

static const char *fmt_rate(char *buf, size_t n, double r)
{
    if (isnan(r))
        snprintf(buf, n, "-");
    else if (r >= 1e6)
        snprintf(buf, n, "%.2f M/s", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, n, "%.1f k/s", r / 1e3);
    else
        snprintf(buf, n, "%.0f /s", r);
    return buf;
}
#define RATE(r) fmt_rate((char[32]){0}, 32, (r))

static const char *fmt_x(char *buf, size_t n, double x)
{
    if (isnan(x))
        snprintf(buf, n, "-");
    else if (isinf(x))
        snprintf(buf, n, "inf");
    else if (x >= 100)
        snprintf(buf, n, "%.0fx", x);
    else
        snprintf(buf, n, "%.2fx", x);
    return buf;
}
#define X(x) fmt_x((char[32]){0}, 32, (x))

/* max/min share: "1.07"; "2e+07" when one process nearly starved; "inf" */
static const char *fmt_fair(char *buf, size_t n, double f)
{
    if (isinf(f))
        snprintf(buf, n, "inf");
    else if (f >= 1000)
        snprintf(buf, n, "%.0e", f);
    else
        snprintf(buf, n, "%.2f", f);
    return buf;
}
#define FAIR(f) fmt_fair((char[32]){0}, 32, (f))

/* ---- batches ---------------------------------------------------------------- */

/* One operation; 0 = done, else a negative errno (the measurement stops). */
typedef int (*op_fn)(void *ctx);

struct batch_res {
    struct summary s;     /* over batches: each value is one batch's mean ns/op */
    long  ops_per_batch;
    int   batches;
    int   err;            /* 0, or the failing op's result */
};

#define MAX_BATCHES 1000

/* Warm up for cfg.warm_ms (also sizes the batches to ~cfg.batch_ms each), then
 * time cfg.batches batches of N back-to-back operations. */
static void measure_batches(op_fn op, void *ctx, struct batch_res *br)
{
    static double v[MAX_BATCHES];
    memset(br, 0, sizeof *br);
    uint64_t t0 = now_ns(), warm = (uint64_t)(cfg.warm_ms * 1e6), t_half = 0, t_end;
    long n = 0, n_half = 0;
    int r;
    do {
        for (int i = 0; i < 8; i++)
            if ((r = op(ctx)) != 0) { br->err = r; return; }
        n += 8;
        t_end = now_ns();
        if (!t_half && t_end - t0 >= warm / 2) {
            t_half = t_end;     /* size batches on the second half only: the */
            n_half = n;         /* first may pay one-time costs (new keys)    */
        }
    } while (t_end - t0 < warm);
    double est = n > n_half && t_half ? (double)(t_end - t_half) / (double)(n - n_half)
                                      : (double)(t_end - t0) / (double)n;
    long per = (long)(cfg.batch_ms * 1e6 / (est > 0.1 ? est : 0.1));
    if (per < 8) per = 8;
    if (per > (1L << 24)) per = 1L << 24;
    int nb = cfg.batches > MAX_BATCHES ? MAX_BATCHES : cfg.batches;
    for (int b = 0; b < nb; b++) {
        uint64_t ta = now_ns();
        for (long i = 0; i < per; i++)
            if ((r = op(ctx)) != 0) { br->err = r; return; }
        v[b] = (double)(now_ns() - ta) / (double)per;
    }
    summarize(v, nb, &br->s);
    br->ops_per_batch = per;
    br->batches = nb;
}

/* ---- results the goals need --------------------------------------------------- */

static const int g_nprocs[] = { 2, 4, 8 };
#define NPROCS ((int)(sizeof g_nprocs / sizeof g_nprocs[0]))

static struct {
    double s1_med[PEER__COUNT];         /* NAN = not measured */
    double s3_rate[PEER__COUNT][NPROCS];
    double s6_med[PEER__COUNT], s6_p99[PEER__COUNT];
    double s4_med[8];
    uint32_t s4_level[8];
    int    s4_n;
    int    s4_big_skipped;
} R;

/* ======================================================================== */
/* Scenario 1: uncontended acquire+release                                    */

struct s1ctx {
    const struct peer_ops *ops;
    struct pinst *pi;
    int use_try;
};

static int op_acq_rel(void *c)
{
    struct s1ctx *x = c;
    int r = x->use_try ? x->ops->try_acquire(x->pi) : x->ops->acquire(x->pi);
    if (r != 0)
        return r == 1 ? -EBUSY : r;
    return x->ops->release(x->pi);
}

static void scenario1(void)
{
    printf("\n## 1. Uncontended acquire+release (one process, one key)\n\n");
    printf("Time of one acquire plus one release, no other process involved. "
           "Median and p99 over %d batches; each batch value is the mean ns/op of "
           "N back-to-back operations (N sized to ~%.0f ms per batch, after %.0f ms warm-up).\n\n",
           cfg.batches, cfg.batch_ms, cfg.warm_ms);
    printf("| peer | call | median | p99 | vs shmlease | N/batch |\n");
    printf("|---|---|---:|---:|---:|---:|\n");
    FILE *csv = csv_open("uncontended.csv", "peer,call,median_ns,p99_ns,min_ns,max_ns,batches,ops_per_batch");

    struct { int id; int use_try; const char *label; const char *call; } rows[] = {
        { PEER_CAS,      1, "cas-word",   "CAS 0->1, store 0" },
        { PEER_RMUTEX,   0, "robust-mutex", "pthread_mutex_lock/unlock (robust, pshared)" },
        { PEER_SHMLEASE, 1, "shmlease",   "shmlease_acquire(wait_ms=0) + shmlease_release" },
        { PEER_SHMLEASE, 0, "shmlease-wait", "shmlease_acquire(wait_ms=-1) + shmlease_release" },
        { PEER_OFD,      0, "ofd-lock",   "fcntl F_OFD_SETLKW / F_UNLCK" },
        { PEER_FLOCK,    0, "flock",      "flock LOCK_EX / LOCK_UN" },
        { PEER_SEM,      0, "posix-sem",  "sem_wait / sem_post" },
        { PEER_REDIS,    0, "redis",      "SET NX PX + EVALSHA compare-and-delete" },
    };
    enum { NROWS = sizeof rows / sizeof rows[0] };
    struct batch_res res[NROWS];
    char errs[NROWS][64];
    double shm_med = NAN;
    for (size_t i = 0; i < NROWS; i++) {
        int id = rows[i].id;
        errs[i][0] = 0;
        memset(&res[i], 0, sizeof res[i]);
        if (!peer_available(id)) {
            snprintf(errs[i], sizeof errs[i], "skipped");
            continue;
        }
        progress("[1] uncontended: %s", rows[i].label);
        const struct peer_ops *ops = peer(id);
        struct pinst pi;
        pinst_init(&pi, id);
        int r = ops->attach(&pi);
        if (r == 0) {
            struct s1ctx x = { ops, &pi, rows[i].use_try };
            measure_batches(op_acq_rel, &x, &res[i]);
            r = res[i].err;
            ops->detach(&pi);
        }
        if (r != 0) {
            snprintf(errs[i], sizeof errs[i], "ERROR: %s", peer_errname(r));
            g_failed = 1;
            continue;
        }
        if (strcmp(rows[i].label, "shmlease") == 0)
            shm_med = res[i].s.median;
        if (strcmp(rows[i].label, "shmlease-wait") != 0)
            R.s1_med[id] = res[i].s.median;
    }
    for (size_t i = 0; i < NROWS; i++) {
        struct batch_res *br = &res[i];
        if (errs[i][0]) {
            printf("| %s | %s | %s | | | |\n", rows[i].label, rows[i].call, errs[i]);
            continue;
        }
        printf("| %s | %s | %s | %s | %s | %ld |\n", rows[i].label, rows[i].call,
               T(br->s.median), T(br->s.p99), X(br->s.median / shm_med), br->ops_per_batch);
        if (csv)
            fprintf(csv, "%s,\"%s\",%.2f,%.2f,%.2f,%.2f,%d,%ld\n", rows[i].label, rows[i].call,
                    br->s.median, br->s.p99, br->s.min, br->s.max, br->batches, br->ops_per_batch);
    }
    if (csv)
        fclose(csv);
    printf("\n'vs shmlease' = the peer's median / shmlease's median (wait_ms=0 row); "
           "the CAS word is the floor no lock can beat.\n");
}

/* ======================================================================== */
/* Scenario 2: try-acquire on a key held by another process                   */

static int holder_child(void *arg)
{
    int id = *(int *)arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(id);
    struct pinst pi;
    pinst_init(&pi, id);
    int r = ops->attach(&pi);
    if (r == 0)
        r = ops->acquire(&pi);
    if (r != 0) {
        sh->errors[0] = r;
        __atomic_store_n(&sh->ready, 2, __ATOMIC_RELEASE);
        return 1;
    }
    __atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
    wait_u32_ge(&sh->stop, 1, 600000);
    ops->release(&pi);
    ops->detach(&pi);
    return 0;
}

struct s2ctx { const struct peer_ops *ops; struct pinst *pi; };

static int op_try_busy(void *c)
{
    struct s2ctx *x = c;
    int r = x->ops->try_acquire(x->pi);
    if (r == 1)
        return 0;
    if (r == 0) {                  /* took a lock another process holds */
        x->ops->release(x->pi);
        return -EDEADLK;
    }
    return r;
}

static void reset_ctl(void)
{
    struct shared *sh = g_env.sh;
    sh->ready = sh->go = sh->stop = sh->phase = sh->waiting = sh->done = 0;
    sh->inside = sh->violations = 0;
    sh->counter = sh->owner_changes = 0;
    sh->last_owner = 0;
    sh->t_mark = 0;
    sh->last_token = 0;
    sh->token_violations = 0;
    memset(sh->counts, 0, sizeof sh->counts);
    memset(sh->errors, 0, sizeof sh->errors);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void scenario2(void)
{
    printf("\n## 2. Try-acquire on a key held by another process\n\n");
    printf("Another process holds the lock; this one tries once and is refused. "
           "Median and p99 over %d batches (batch mean ns per refused try).\n\n", cfg.batches);
    printf("| peer | call | median | p99 | vs shmlease |\n|---|---|---:|---:|---:|\n");
    FILE *csv = csv_open("trybusy.csv", "peer,call,median_ns,p99_ns,min_ns,max_ns,batches,ops_per_batch");
    struct { int id; const char *call; } rows[] = {
        { PEER_CAS,      "CAS fails" },
        { PEER_RMUTEX,   "pthread_mutex_trylock -> EBUSY" },
        { PEER_SHMLEASE, "shmlease_acquire(wait_ms=0) -> -EBUSY" },
        { PEER_OFD,      "F_OFD_SETLK -> EAGAIN" },
        { PEER_FLOCK,    "flock LOCK_NB -> EWOULDBLOCK" },
        { PEER_SEM,      "sem_trywait -> EAGAIN" },
        { PEER_REDIS,    "SET NX -> nil" },
    };
    enum { NROWS = sizeof rows / sizeof rows[0] };
    struct batch_res res[NROWS];
    char errs[NROWS][96];
    double shm_med = NAN;
    for (size_t i = 0; i < NROWS; i++) {
        int id = rows[i].id;
        const char *name = peer(id)->name;
        errs[i][0] = 0;
        memset(&res[i], 0, sizeof res[i]);
        if (!peer_available(id)) {
            snprintf(errs[i], sizeof errs[i], "skipped");
            continue;
        }
        progress("[2] try-busy: %s", name);
        reset_ctl();
        g_env.sh->cas_word = 0;
        int idarg = id;
        pid_t h = spawn(holder_child, &idarg);
        const char *err = NULL;
        char ebuf[64];
        if (h < 0) {
            err = "fork failed";
        } else if (wait_u32_ge(&g_env.sh->ready, 1, 10000) < 0) {
            err = "holder did not start";
        } else if (g_env.sh->ready != 1) {
            snprintf(ebuf, sizeof ebuf, "holder: %s", peer_errname(g_env.sh->errors[0]));
            err = ebuf;
        } else {
            const struct peer_ops *ops = peer(id);
            struct pinst pi;
            pinst_init(&pi, id);
            int r = ops->attach(&pi);
            if (r == 0) {
                struct s2ctx x = { ops, &pi };
                measure_batches(op_try_busy, &x, &res[i]);
                r = res[i].err;
                ops->detach(&pi);
            }
            if (r == -EDEADLK) {
                err = "ACQUIRED A LOCK HELD BY ANOTHER PROCESS";
            } else if (r != 0) {
                snprintf(ebuf, sizeof ebuf, "%s", peer_errname(r));
                err = ebuf;
            }
        }
        __atomic_store_n(&g_env.sh->stop, 1, __ATOMIC_RELEASE);
        if (h > 0 && wait_child(h, 10000, NULL) < 0) {
            kill_child(h);
            if (!err)
                err = "holder hung in release";
        }
        if (err) {
            snprintf(errs[i], sizeof errs[i], "ERROR: %s", err);
            g_failed = 1;
            continue;
        }
        if (id == PEER_SHMLEASE)
            shm_med = res[i].s.median;
    }
    for (size_t i = 0; i < NROWS; i++) {
        const char *name = peer(rows[i].id)->name;
        struct batch_res *br = &res[i];
        if (errs[i][0]) {
            printf("| %s | %s | %s | | |\n", name, rows[i].call, errs[i]);
            continue;
        }
        printf("| %s | %s | %s | %s | %s |\n", name, rows[i].call, T(br->s.median), T(br->s.p99),
               X(br->s.median / shm_med));
        if (csv)
            fprintf(csv, "%s,\"%s\",%.2f,%.2f,%.2f,%.2f,%d,%ld\n", name, rows[i].call, br->s.median,
                    br->s.p99, br->s.min, br->s.max, br->batches, br->ops_per_batch);
    }
    if (csv)
        fclose(csv);
}

/* ======================================================================== */
/* Scenario 3: contended, 2/4/8 processes on one key                          */

struct s3arg { int id; int me; };

static int worker_child(void *arg)
{
    struct s3arg *a = arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(a->id);
    struct pinst pi;
    pinst_init(&pi, a->id);
    int r = ops->attach(&pi);
    if (r != 0) {
        sh->errors[a->me] = r;
        __atomic_fetch_add(&sh->ready, 1, __ATOMIC_ACQ_REL);
        return 1;
    }
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_ACQ_REL);
    if (wait_u32_ge(&sh->go, 1, 60000) < 0)
        return 2;
    volatile uint64_t *counter = &sh->counter;
    uint64_t n = 0;
    uint32_t me = (uint32_t)a->me + 1;
    for (;;) {
        if ((r = ops->acquire(&pi)) != 0) {
            sh->errors[a->me] = r;
            break;
        }
        /* the critical section: exclusive, or abort */
        if (__atomic_exchange_n(&sh->inside, 1, __ATOMIC_ACQ_REL) != 0) {
            __atomic_fetch_add(&sh->violations, 1, __ATOMIC_RELAXED);
            abort();
        }
        *counter = *counter + 1;
        if (a->id == PEER_SHMLEASE) {   /* fencing tokens grow with every claim */
            if (pi.lease.fencing_token <= sh->last_token) {
                __atomic_fetch_add(&sh->token_violations, 1, __ATOMIC_RELAXED);
                abort();
            }
            sh->last_token = pi.lease.fencing_token;
        }
        if (sh->last_owner != me) {
            sh->owner_changes++;
            sh->last_owner = me;
        }
        n++;
        __atomic_store_n(&sh->inside, 0, __ATOMIC_RELEASE);
        if ((r = ops->release(&pi)) != 0) {
            sh->errors[a->me] = r;
            break;
        }
        if (__atomic_load_n(&sh->stop, __ATOMIC_RELAXED))
            break;
    }
    sh->counts[a->me] = n;
    ops->detach(&pi);
    return r ? 1 : 0;
}

/* One round: 0 and rate/fairness/owner-change rate, or an error string. */
static shmlease_table *g_stats_handle;   /* the parent's view of the bench table */
static char g_stats_note[256];

static const char *contended_round(int id, int np, double *rate, double *fair, double *chg)
{
    static char ebuf[128];
    struct shared *sh = g_env.sh;
    shmlease_stats st0, st1;
    int have_stats = id == PEER_SHMLEASE && g_stats_handle &&
                     shmlease_stats_get(g_stats_handle, &st0) == 0;
    reset_ctl();
    sh->cas_word = 0;
    pid_t kids[MAXP] = { 0 };
    struct s3arg args[MAXP];
    const char *err = NULL;
    for (int i = 0; i < np; i++) {
        args[i].id = id;
        args[i].me = i;
        if ((kids[i] = spawn(worker_child, &args[i])) < 0) {
            err = "fork failed";
            break;
        }
    }
    if (!err && wait_u32_ge(&sh->ready, (uint32_t)np, 20000) < 0)
        err = "workers did not start";
    uint64_t ta = 0, tb = 0;
    if (!err) {
        ta = now_ns();
        __atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
        sleep_us((long)(cfg.round_s * 1e6));
        __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
        tb = now_ns();
    } else {
        __atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
        __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
    }
    int hung = 0, bad = 0, badsig = 0;
    for (int i = 0; i < np; i++) {
        if (kids[i] <= 0)
            continue;
        int st = 0;
        if (wait_child(kids[i], 20000, &st) < 0) {
            hung++;
            kill_child(kids[i]);
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            bad++;
            if (WIFSIGNALED(st))
                badsig = WTERMSIG(st);
        }
    }
    if (err)
        return err;
    if (sh->violations) {
        snprintf(ebuf, sizeof ebuf, "MUTUAL EXCLUSION VIOLATED (%u times)", sh->violations);
        return ebuf;
    }
    if (sh->token_violations) {
        snprintf(ebuf, sizeof ebuf, "FENCING TOKEN NOT GREATER THAN THE PREVIOUS CLAIM'S");
        return ebuf;
    }
    if (hung) {
        snprintf(ebuf, sizeof ebuf, "HANG: %d of %d workers still waiting 20 s after stop", hung, np);
        return ebuf;
    }
    if (bad) {
        int e = 0;
        for (int i = 0; i < np; i++)
            if (sh->errors[i]) e = sh->errors[i];
        if (badsig)
            snprintf(ebuf, sizeof ebuf, "%d workers failed (signal %d)", bad, badsig);
        else
            snprintf(ebuf, sizeof ebuf, "%d workers failed (%s)", bad, e ? peer_errname(e) : "?");
        return ebuf;
    }
    uint64_t sum = 0, mx = 0, mn = UINT64_MAX;
    for (int i = 0; i < np; i++) {
        sum += sh->counts[i];
        if (sh->counts[i] > mx) mx = sh->counts[i];
        if (sh->counts[i] < mn) mn = sh->counts[i];
    }
    if (sum != sh->counter) {
        snprintf(ebuf, sizeof ebuf, "LOST UPDATES: counter %llu != %llu acquisitions",
                 (unsigned long long)sh->counter, (unsigned long long)sum);
        return ebuf;
    }
    if (have_stats && shmlease_stats_get(g_stats_handle, &st1) == 0 && !g_stats_note[0] &&
        st1.acquisitions - st0.acquisitions != sum)
        snprintf(g_stats_note, sizeof g_stats_note,
                 "shmlease_stats_get disagrees with the workers (%d procs): %llu acquisitions "
                 "counted by the table, %llu by the workers",
                 np, (unsigned long long)(st1.acquisitions - st0.acquisitions), (unsigned long long)sum);
    double secs = (double)(tb - ta) / 1e9;
    *rate = (double)sum / secs;
    *chg = (double)sh->owner_changes / secs;
    *fair = mn ? (double)mx / (double)mn : INFINITY;
    return NULL;
}

static void scenario3(void)
{
    printf("\n## 3. Contended: 2, 4 and 8 processes on one key\n\n");
    printf("Each process loops: blocking acquire; critical section (claims an 'inside' flag "
           "and aborts if it was already set; increments a shared counter without atomics); "
           "release. %d rounds of %.2f s each; acq/s = acquisitions per second of all processes "
           "together (the issue's handoffs), median and worst round; owner changes/s counts "
           "only acquisitions by a different process than the previous one; fairness = max/min "
           "acquisitions per process (1.00 = even; inf = a process starved), median and worst round. "
           "The counter is checked against the sum of acquisitions after each round.\n\n",
           cfg.rounds, cfg.round_s);
    printf("| procs | peer | acq/s median | acq/s worst | owner changes/s | fairness median | fairness worst |\n");
    printf("|---:|---|---:|---:|---:|---:|---:|\n");
    FILE *csv = csv_open("contended.csv",
                         "peer,procs,acq_per_s_median,acq_per_s_worst,owner_changes_per_s_median,fairness_median,fairness_worst,rounds");
    const int ids[] = { PEER_CAS, PEER_RMUTEX, PEER_SHMLEASE, PEER_OFD, PEER_FLOCK, PEER_SEM };
    enum { NIDS = sizeof ids / sizeof ids[0] };
    struct { int ok; double rate, worst, chg, fair, fair_worst; int rounds; } res[NIDS][NPROCS];
    memset(res, 0, sizeof res);
    if (shmlease_open(g_env.table_name, NULL, &g_stats_handle) != 0)
        g_stats_handle = NULL;
    for (int pi_ = 0; pi_ < NPROCS; pi_++) {
        int np = g_nprocs[pi_];
        for (size_t k = 0; k < NIDS; k++) {
            int id = ids[k];
            const char *name = peer(id)->name;
            double rates[64], fairs[64], chgs[64];
            int nr = cfg.rounds > 64 ? 64 : cfg.rounds;
            const char *err = NULL;
            for (int r = 0; r < nr && !err; r++) {
                progress("[3] contended: %s, %d procs, round %d/%d", name, np, r + 1, nr);
                err = contended_round(id, np, &rates[r], &fairs[r], &chgs[r]);
            }
            if (err) {
                printf("| %d | %s | ERROR: %s | | | | |\n", np, name, err);
                g_failed = 1;
                R.s3_rate[id][pi_] = NAN;
                continue;
            }
            struct summary sr, sf, sc;
            summarize(rates, nr, &sr);
            summarize(fairs, nr, &sf);
            summarize(chgs, nr, &sc);
            R.s3_rate[id][pi_] = sr.median;
            printf("| %d | %s | %s | %s | %s | %s | %s |\n", np, name, RATE(sr.median), RATE(sr.min),
                   RATE(sc.median), FAIR(sf.median), FAIR(sf.max));
            res[k][pi_].ok = 1;
            res[k][pi_].rate = sr.median;
            res[k][pi_].worst = sr.min;
            res[k][pi_].chg = sc.median;
            res[k][pi_].fair = sf.median;
            res[k][pi_].fair_worst = sf.max;
            res[k][pi_].rounds = nr;
        }
    }
    /* CSV: one block of rows per peer (plots draw one line per peer) */
    for (size_t k = 0; csv && k < NIDS; k++)
        for (int pi_ = 0; pi_ < NPROCS; pi_++)
            if (res[k][pi_].ok)
                fprintf(csv, "%s,%d,%.1f,%.1f,%.1f,%.3f,%.3f,%d\n", peer(ids[k])->name, g_nprocs[pi_],
                        res[k][pi_].rate, res[k][pi_].worst, res[k][pi_].chg,
                        isinf(res[k][pi_].fair) ? 1e9 : res[k][pi_].fair,
                        isinf(res[k][pi_].fair_worst) ? 1e9 : res[k][pi_].fair_worst, res[k][pi_].rounds);
    if (csv)
        fclose(csv);
    printf("\ncas-word spins (pause, sched_yield every 16 tries): a floor for the handoff "
           "itself, not a lock anyone should block on. shmlease rounds also check that every "
           "claim's fencing token exceeds the previous claim's, and that the table's "
           "acquisitions counter (shmlease_stats_get) matches the workers' count: %s.\n",
           !g_stats_handle ? "not checked (no handle)" : g_stats_note[0] ? g_stats_note : "it does");
    shmlease_close(g_stats_handle);
    g_stats_handle = NULL;
}

/* ======================================================================== */
/* Scenario 5: wake-up latency                                                */

struct s5arg { int id; int n; };

static int wake_child(void *arg)
{
    struct s5arg *a = arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(a->id);
    struct pinst pi;
    pinst_init(&pi, a->id);
    int r = ops->attach(&pi);
    if (r != 0) {
        sh->errors[0] = r;
        return 1;
    }
    __atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < a->n; i++) {
        if (wait_u32_ge(&sh->phase, (uint32_t)i + 1, 60000) < 0)
            return 2;
        __atomic_store_n(&sh->waiting, (uint32_t)i + 1, __ATOMIC_RELEASE);
        r = ops->acquire(&pi);
        uint64_t t = now_ns();
        if (r != 0) {
            sh->errors[0] = r;
            return 1;
        }
        uint64_t mark = __atomic_load_n(&sh->t_mark, __ATOMIC_ACQUIRE);
        sh->samples[i] = mark ? (double)(t - mark) : NAN;
        __atomic_store_n(&sh->t_mark, 0, __ATOMIC_RELEASE);
        r = ops->release(&pi);
        __atomic_store_n(&sh->done, (uint32_t)i + 1, __ATOMIC_RELEASE);
        if (r != 0) {
            sh->errors[0] = r;
            return 1;
        }
    }
    ops->detach(&pi);
    return 0;
}

static void scenario5(void)
{
    int n = cfg.wake_samples > MAX_SAMPLES ? MAX_SAMPLES : cfg.wake_samples;
    printf("\n## 5. Wake-up latency\n\n");
    printf("The holder writes CLOCK_MONOTONIC to shared memory right before it releases; a "
           "waiter in another process, blocked in its acquire (checked: it sleeps in the "
           "kernel per /proc/PID/stat), reads the clock right after its acquire returns. "
           "Median and p99 over %d per-sample values.\n\n", n);
    printf("| peer | median | p99 | max | samples |\n|---|---:|---:|---:|---:|\n");
    FILE *csv = csv_open("wakeup.csv", "peer,median_ns,p99_ns,min_ns,max_ns,samples,not_blocked");
    FILE *raw = csv_open("wakeup_samples.csv", "peer,sample,ns");
    const int ids[] = { PEER_RMUTEX, PEER_SHMLEASE, PEER_OFD, PEER_FLOCK, PEER_SEM };
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
        int id = ids[k];
        const struct peer_ops *ops = peer(id);
        progress("[5] wake-up: %s", ops->name);
        reset_ctl();
        struct shared *sh = g_env.sh;
        struct s5arg a = { id, n };
        struct pinst pi;
        pinst_init(&pi, id);
        const char *err = NULL;
        char ebuf[96];
        int not_blocked = 0;
        int r = ops->attach(&pi);
        pid_t w = -1;
        if (r != 0) {
            snprintf(ebuf, sizeof ebuf, "attach: %s", peer_errname(r));
            err = ebuf;
        } else if ((w = spawn(wake_child, &a)) < 0) {
            err = "fork failed";
        } else if (wait_u32_ge(&sh->ready, 1, 10000) < 0) {
            err = "waiter did not start";
        }
        for (int i = 0; i < n && !err; i++) {
            if ((r = ops->acquire(&pi)) != 0) {
                snprintf(ebuf, sizeof ebuf, "acquire: %s", peer_errname(r));
                err = ebuf;
                break;
            }
            __atomic_store_n(&sh->phase, (uint32_t)i + 1, __ATOMIC_RELEASE);
            if (wait_u32_ge(&sh->waiting, (uint32_t)i + 1, 10000) < 0) {
                err = "waiter lost";
                ops->release(&pi);
                break;
            }
            if (wait_blocked(w, 2000) < 0)
                not_blocked++;
            __atomic_store_n(&sh->t_mark, now_ns(), __ATOMIC_RELEASE);
            if ((r = ops->release(&pi)) != 0) {
                snprintf(ebuf, sizeof ebuf, "release: %s", peer_errname(r));
                err = ebuf;
                break;
            }
            if (wait_u32_ge(&sh->done, (uint32_t)i + 1, 20000) < 0) {
                err = sh->errors[0] ? "waiter failed" : "HANG: waiter not woken within 20 s";
                break;
            }
        }
        if (w > 0) {
            int st = 0;
            if (wait_child(w, err ? 1000 : 10000, &st) < 0)
                kill_child(w);
            else if (!err && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
                err = "waiter failed";
        }
        if (pi.fd >= 0 || pi.table || pi.sem || pi.redis)
            ops->detach(&pi);
        if (err) {
            printf("| %s | ERROR: %s%s%s%s | | | |\n", ops->name, err,
                   sh->errors[0] ? " (" : "", sh->errors[0] ? peer_errname(sh->errors[0]) : "",
                   sh->errors[0] ? ")" : "");
            g_failed = 1;
            continue;
        }
        double v[MAX_SAMPLES];
        int m = 0;
        for (int i = 0; i < n; i++)
            if (!isnan(sh->samples[i])) {
                v[m++] = sh->samples[i];
                if (raw)
                    fprintf(raw, "%s,%d,%.0f\n", ops->name, i, sh->samples[i]);
            }
        struct summary s;
        summarize(v, m, &s);
        printf("| %s | %s | %s | %s | %d%s |\n", ops->name, T(s.median), T(s.p99), T(s.max), m,
               not_blocked ? " (some not seen blocked)" : "");
        if (csv)
            fprintf(csv, "%s,%.0f,%.0f,%.0f,%.0f,%d,%d\n", ops->name, s.median, s.p99, s.min, s.max, m,
                    not_blocked);
    }
    if (csv)
        fclose(csv);
    if (raw)
        fclose(raw);
}

/* ======================================================================== */
/* Scenario 6: crash takeover                                                 */

static int crash_holder(void *arg)
{
    int id = *(int *)arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(id);
    struct pinst pi;
    pinst_init(&pi, id);
    if (id == PEER_REDIS)
        pi.ttl_ms = (uint64_t)g_redis_ttl_ms;
    int r = ops->attach(&pi);
    if (r == 0)
        r = ops->acquire(&pi);
    if (r != 0) {
        sh->errors[0] = r;
        __atomic_store_n(&sh->ready, 2, __ATOMIC_RELEASE);
        return 1;
    }
    if (id == PEER_SHMLEASE)
        sh->last_token = pi.lease.fencing_token;
    __atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
    for (;;)
        pause();               /* until SIGKILL */
}

struct s6arg { int id; int i; };

static int crash_waiter(void *arg)
{
    struct s6arg *a = arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(a->id);
    struct pinst pi;
    pinst_init(&pi, a->id);
    if (a->id == PEER_REDIS)
        pi.ttl_ms = (uint64_t)g_redis_ttl_ms;
    int r = ops->attach(&pi);
    if (r != 0) {
        sh->errors[1] = r;
        return 1;
    }
    __atomic_store_n(&sh->waiting, 1, __ATOMIC_RELEASE);
    r = ops->acquire(&pi);
    uint64_t t = now_ns();
    if (r != 0) {
        sh->errors[1] = r;
        return 1;
    }
    uint64_t mark = __atomic_load_n(&sh->t_mark, __ATOMIC_ACQUIRE);
    sh->samples[a->i] = mark ? (double)(t - mark) : NAN;   /* NAN: owned before the kill */
    if (a->id == PEER_RMUTEX && pi.owner_dead != 1)
        sh->errors[1] = -EPROTO;          /* took it without EOWNERDEAD */
    if (a->id == PEER_SHMLEASE && pi.lease.fencing_token <= sh->last_token)
        sh->errors[1] = -EPROTO;          /* token not above the dead holder's */
    ops->release(&pi);
    ops->detach(&pi);
    return 0;
}

static void scenario6(void)
{
    int n = cfg.takeover_samples > MAX_SAMPLES ? MAX_SAMPLES : cfg.takeover_samples;
    printf("\n## 6. Crash takeover\n\n");
    printf("A holder process owns the lock; a waiter in another process blocks on it; the "
           "holder is SIGKILLed. Time from right before kill() to the moment the waiter owns "
           "the lock. Once the waiter is seen asleep, the kill comes after a random 0-3 ms pause, "
           "so that it falls at a random point of any polling period. Median and p99 over "
           "per-sample values (%d kills per peer).\n\n", n);
    printf("| peer | median | p99 | max | samples | how the waiter learns |\n|---|---:|---:|---:|---:|---|\n");
    FILE *csv = csv_open("takeover.csv", "peer,median_ns,p99_ns,min_ns,max_ns,samples,note");
    FILE *raw = csv_open("takeover_samples.csv", "peer,sample,ns");
    struct { int id; const char *note; } rows[] = {
        { PEER_RMUTEX,   "EOWNERDEAD (kernel robust list)" },
        { PEER_SHMLEASE, "holder's liveness (kernel-held registry byte lock); its 10 min TTL plays no part" },
        { PEER_OFD,      "kernel drops the lock with the last fd" },
        { PEER_FLOCK,    "kernel drops the lock with the last fd" },
        { PEER_REDIS,    "TTL-bound" },
    };
    char redis_note[96];
    snprintf(redis_note, sizeof redis_note, "TTL-bound: PX %d ms expires; waiter polls SET NX every %d µs",
             g_redis_ttl_ms, redis_poll_us());
    rows[4].note = redis_note;
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        int id = rows[k].id;
        const struct peer_ops *ops = peer(id);
        if (!peer_available(id)) {
            printf("| %s | skipped | | | | %s |\n", ops->name, g_env.redis_why);
            continue;
        }
        struct shared *sh = g_env.sh;
        int got = 0, fails = 0, early = 0;
        const char *err = NULL;
        char ebuf[128];
        double v[MAX_SAMPLES];
        uint64_t xs = 0x2545f4914f6cdd1dull ^ ((uint64_t)getpid() << 16) ^ (uint64_t)id;
        for (int i = 0; i < n && !err; i++) {
            if (i % 10 == 0)
                progress("[6] takeover: %s, kill %d/%d", ops->name, i + 1, n);
            reset_ctl();
            sh->samples[i] = NAN;
            int idarg = id;
            pid_t h = spawn(crash_holder, &idarg), w = -1;
            if (h < 0) { err = "fork failed"; break; }
            if (wait_u32_ge(&sh->ready, 1, 10000) < 0 || sh->ready != 1) {
                snprintf(ebuf, sizeof ebuf, "holder failed (%s)", peer_errname(sh->errors[0]));
                err = ebuf;
                kill_child(h);
                break;
            }
            struct s6arg a = { id, i };
            if ((w = spawn(crash_waiter, &a)) < 0) {
                err = "fork failed";
                kill_child(h);
                break;
            }
            if (wait_u32_ge(&sh->waiting, 1, 10000) < 0) {
                err = "waiter did not start";
                kill_child(h);
                kill_child(w);
                break;
            }
            wait_blocked(w, 2000);
            /* a random point in time, not always right after the waiter fell
             * asleep: a lock that polls would otherwise always be measured
             * at the worst phase of its polling period */
            xs ^= xs << 13; xs ^= xs >> 7; xs ^= xs << 17;
            sleep_us((long)(xs % 3001));
            __atomic_store_n(&sh->t_mark, now_ns(), __ATOMIC_RELEASE);
            kill(h, SIGKILL);
            int st = 0;
            if (wait_child(w, 10000, &st) < 0) {
                kill_child(w);
                fails++;
            } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || sh->errors[1]) {
                snprintf(ebuf, sizeof ebuf, "waiter failed (%s)",
                         sh->errors[1] ? peer_errname(sh->errors[1]) : "crashed");
                err = ebuf;
            } else if (isnan(sh->samples[i])) {
                early++;
            } else {
                v[got++] = sh->samples[i];
                if (raw)
                    fprintf(raw, "%s,%d,%.0f\n", ops->name, i, sh->samples[i]);
            }
            kill_child(h);
            if (fails >= 3)
                err = "HANG: the waiter did not get the lock within 10 s of the holder's death (3 times)";
        }
        if (err) {
            printf("| %s | ERROR: %s | | | %d | |\n", ops->name, err, got);
            g_failed = 1;
            R.s6_med[id] = R.s6_p99[id] = NAN;
            continue;
        }
        struct summary s;
        summarize(v, got, &s);
        R.s6_med[id] = s.median;
        R.s6_p99[id] = s.p99;
        char extra[96] = "";
        if (fails || early)
            snprintf(extra, sizeof extra, " (%d no takeover in 10 s, %d owned before the kill)", fails, early);
        printf("| %s | %s | %s | %s | %d%s | %s |\n", ops->name, T(s.median), T(s.p99), T(s.max), got,
               extra, rows[k].note);
        if (csv)
            fprintf(csv, "%s,%.0f,%.0f,%.0f,%.0f,%d,\"%s\"\n", ops->name, s.median, s.p99, s.min, s.max, got,
                    rows[k].note);
        if (fails)
            g_failed = 1;
    }
    if (csv)
        fclose(csv);
    if (raw)
        fclose(raw);
    printf("\nposix-sem is not in this table: a SIGKILLed holder never posts, its waiter "
           "blocks forever. cas-word likewise.\n");
}

/* ======================================================================== */
/* Scenarios 4 and 7: many keys; memory                                       */

struct s4ctx {
    shmlease_table *t;
    char (*keys)[24];
    uint32_t *seq;
    uint32_t seqmask;
    uint32_t pos;
    shmlease_lease l;
};

static int op_many(void *c)
{
    struct s4ctx *x = c;
    const char *key = x->keys[x->seq[x->pos++ & x->seqmask]];
    shmlease_acquire_opts o = { .ttl_ms = LONG_TTL_MS, .wait_ms = 0 };
    int r = shmlease_acquire(x->t, key, &o, &x->l);
    if (r != 0)
        return r == -EBUSY ? -EDEADLK : r;
    return shmlease_release(x->t, &x->l);
}

static int count_cb(const shmlease_info *info, void *arg)
{
    (void)info;
    (*(uint64_t *)arg)++;
    return 0;
}

#define WS_KEYS 1024u

static uint64_t est_segment(uint32_t cap)
{
    uint64_t nb = 1;
    while (nb < 2ull * cap)
        nb <<= 1;
    return 4096 + 4096ull * 64 + nb * 8 + (uint64_t)cap * 320;
}

static void memory_rows(FILE *csv, const char *what, shmlease_table *t, int do_walk, int do_dump,
                        const char *name);

static int run_dump(const char *name, double *ms, int *status)
{
    uint64_t ta = now_ns();
    pid_t p = fork();
    if (p < 0)
        return -1;
    if (p == 0) {
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) {
            dup2(nul, 1);
            dup2(nul, 2);
        }
        execl(cfg.dump_bin, cfg.dump_bin, name, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    uint64_t deadline = ta + 180000000000ull;
    while (waitpid(p, &st, WNOHANG) == 0) {
        if (now_ns() > deadline) {
            kill(p, SIGKILL);
            waitpid(p, &st, 0);
            *status = -1;
            *ms = NAN;
            return 0;
        }
        sleep_us(2000);
    }
    *ms = (double)(now_ns() - ta) / 1e6;
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return 0;
}

static struct { shmlease_table *meas, *fill; char name[96]; } g_big;

static void scenario4(void)
{
    printf("\n## 4. Many keys: cost as the table fills\n\n");
    uint32_t levels[4] = { 1, 1000, 100000, 1u << 20 };
    int nlev = cfg.quick ? 3 : 4;
    if (cfg.big_keys < levels[nlev - 1])
        levels[nlev - 1] = cfg.big_keys;
    uint32_t cap = levels[nlev - 1] + 4096;
    if (cap > SHMLEASE_CAPACITY_MAX)
        cap = SHMLEASE_CAPACITY_MAX;

    struct statvfs sv;
    uint64_t need = est_segment(cap), avail = 0;
    if (statvfs("/dev/shm", &sv) == 0)
        avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    while (nlev > 1 && avail < need + (need >> 3) + (64u << 20)) {
        printf("%u live keys: skipped (the table needs ~%llu MB of /dev/shm, %llu MB free)\n\n",
               levels[nlev - 1], (unsigned long long)(need >> 20), (unsigned long long)(avail >> 20));
        if (levels[nlev - 1] >= (1u << 20))
            R.s4_big_skipped = 1;
        nlev--;
        cap = levels[nlev - 1] + 4096;
        need = est_segment(cap);
    }
    printf("One table of capacity %u. Another handle fills it with held leases (TTL 10 min) "
           "to each level in turn; at each level, acquire(wait_ms=0)+release on keys drawn at random "
           "from a fixed working set of %u other keys (new at first, existing later). "
           "Median and p99 over %d batches (batch mean ns/op).\n\n", cap, WS_KEYS, cfg.batches);
    printf("| live leases | median | p99 | vs 1 key | fill time (ns/lease) |\n|---:|---:|---:|---:|---:|\n");

    char name[96];
    snprintf(name, sizeof name, "bench-%d-many", (int)getpid());
    shmlease_options o = { .capacity = cap, .flags = SHMLEASE_OPEN_EXCL };
    shmlease_table *meas = NULL, *fill = NULL;
    int r = shmlease_open(name, &o, &meas);
    if (r == 0)
        cleanup_add_shm(name);
    if (r == 0)
        r = shmlease_open(name, NULL, &fill);
    FILE *csv = csv_open("manykeys.csv", "live_leases,median_ns,p99_ns,min_ns,max_ns,batches,ops_per_batch,fill_ns_per_lease");
    if (r != 0) {
        printf("| ERROR: shmlease_open(capacity %u): %s | | | | |\n", cap, peer_errname(r));
        g_failed = 1;
        goto out;
    }

    char (*keys)[24] = calloc(WS_KEYS, sizeof *keys);
    uint32_t seqn = 1u << 16, *seq = calloc(seqn, sizeof *seq);
    if (!keys || !seq) {
        printf("| ERROR: out of memory | | | | |\n");
        g_failed = 1;
        free(keys);
        free(seq);
        goto out;
    }
    for (uint32_t i = 0; i < WS_KEYS; i++)
        snprintf(keys[i], sizeof keys[i], "ws-%u", i);
    uint64_t xs = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    for (uint32_t i = 0; i < seqn; i++) {
        xs ^= xs << 13; xs ^= xs >> 7; xs ^= xs << 17;
        seq[i] = (uint32_t)(xs % WS_KEYS);
    }

    uint32_t filled = 0;
    double base = NAN;
    for (int li = 0; li < nlev; li++) {
        uint32_t target = levels[li];
        progress("[4] many keys: filling to %u", target);
        uint64_t ta = now_ns();
        uint32_t from = filled;
        shmlease_acquire_opts ao = { .ttl_ms = LONG_TTL_MS, .wait_ms = 0 };
        for (; filled < target; filled++) {
            char k[32];
            shmlease_lease l;
            snprintf(k, sizeof k, "fill-%u", filled);
            if ((r = shmlease_acquire(fill, k, &ao, &l)) != 0)
                break;
        }
        double fill_ns = filled > from ? (double)(now_ns() - ta) / (double)(filled - from) : NAN;
        if (r != 0) {
            printf("| %u | ERROR filling at %u: %s | | | |\n", target, filled, peer_errname(r));
            g_failed = 1;
            break;
        }
        shmlease_stats st;
        if (shmlease_stats_get(meas, &st) == 0 && st.held < target) {
            printf("| %u | ERROR: stats say %u held | | | |\n", target, st.held);
            g_failed = 1;
        }
        progress("[4] many keys: measuring at %u", target);
        struct s4ctx x = { meas, keys, seq, seqn - 1, 0, { 0 } };
        struct batch_res br;
        measure_batches(op_many, &x, &br);
        if (br.err) {
            printf("| %u | ERROR: %s | | | |\n", target,
                   br.err == -EDEADLK ? "a working-set key was busy" : peer_errname(br.err));
            g_failed = 1;
            break;
        }
        if (li == 0)
            base = br.s.median;
        R.s4_level[R.s4_n] = target;
        R.s4_med[R.s4_n++] = br.s.median;
        printf("| %u | %s | %s | %s | %s |\n", target, T(br.s.median), T(br.s.p99), X(br.s.median / base),
               T(fill_ns));
        if (csv)
            fprintf(csv, "%u,%.2f,%.2f,%.2f,%.2f,%d,%ld,%.1f\n", target, br.s.median, br.s.p99, br.s.min,
                    br.s.max, br.batches, br.ops_per_batch, fill_ns);
    }
    free(keys);
    free(seq);
out:
    if (csv)
        fclose(csv);
    if (r != 0 && meas) {
        shmlease_unlink(name);
        shmlease_close(meas);
        shmlease_close(fill);
        meas = fill = NULL;
    }
    g_big.meas = meas;         /* scenario 7 walks it, then closes it */
    g_big.fill = fill;
    snprintf(g_big.name, sizeof g_big.name, "%s", name);
}

static void scenario7(void)
{
    printf("\n## 7. Memory and walking a big table\n\n");
    printf("bytes/slot = segment_bytes / capacity from shmlease_stats_get (the whole segment: "
           "header, registry, index and entries, divided by the slots). foreach = one "
           "shmlease_foreach over the table of scenario 4, still full (median of up to 3 walks); "
           "shmlease-dump = one run of the tool on it, output to /dev/null.\n\n");
    printf("| table | capacity | segment | bytes/slot | leases held | foreach | foreach per lease | shmlease-dump |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    FILE *mcsv = csv_open("memory.csv", "table,capacity,segment_bytes,bytes_per_slot,held,foreach_ms,foreach_ns_per_lease,dump_ms,dump_status");
    char sname[96];
    shmlease_table *small = NULL;
    snprintf(sname, sizeof sname, "bench-%d-default", (int)getpid());
    shmlease_options so = { .flags = SHMLEASE_OPEN_EXCL };
    int r = shmlease_open(sname, &so, &small);
    if (r == 0) {
        cleanup_add_shm(sname);
        memory_rows(mcsv, "default capacity", small, 0, 0, sname);
        shmlease_close(small);
        shmlease_unlink(sname);
    } else {
        printf("| default capacity | ERROR: %s | | | | | | |\n", peer_errname(r));
        g_failed = 1;
    }
    if (g_big.meas) {
        memory_rows(mcsv, "scenario 4, full", g_big.meas, 1, 1, g_big.name);
        progress("[7] closing the big table");
        shmlease_unlink(g_big.name);
        shmlease_close(g_big.meas);
        shmlease_close(g_big.fill);
        g_big.meas = g_big.fill = NULL;
    }
    if (mcsv)
        fclose(mcsv);
}

static void memory_rows(FILE *csv, const char *what, shmlease_table *t, int do_walk, int do_dump,
                        const char *name)
{
    shmlease_stats st;
    int r = shmlease_stats_get(t, &st);
    if (r != 0) {
        printf("| %s | ERROR: stats: %s | | | | | | |\n", what, peer_errname(r));
        g_failed = 1;
        return;
    }
    double per_slot = st.capacity ? (double)st.segment_bytes / st.capacity : NAN;
    double walk_ms = NAN, walk_per = NAN, dump_ms = NAN;
    int dump_status = -2;
    char dump_txt[96] = "-";
    if (do_walk) {
        double w[3];
        int nw = 0;
        uint64_t visited = 0;
        for (; nw < 3; nw++) {
            progress("[7] foreach over %u held leases, walk %d", st.held, nw + 1);
            visited = 0;
            uint64_t ta = now_ns();
            r = shmlease_foreach(t, count_cb, &visited);
            w[nw] = (double)(now_ns() - ta) / 1e6;
            if (r != 0 || w[nw] > 3000) {
                nw++;
                break;
            }
        }
        struct summary s;
        summarize(w, nw, &s);
        walk_ms = s.median;
        walk_per = visited ? walk_ms * 1e6 / (double)visited : NAN;
        if (r != 0 || visited < st.held) {
            printf("(foreach returned %d after %llu of %u held leases)\n\n", r,
                   (unsigned long long)visited, st.held);
            g_failed = 1;
        }
    }
    if (do_dump) {
        if (!cfg.dump_bin || access(cfg.dump_bin, X_OK) != 0) {
            snprintf(dump_txt, sizeof dump_txt, "skipped (not built)");
        } else {
            progress("[7] shmlease-dump on the big table");
            if (run_dump(name, &dump_ms, &dump_status) == 0) {
                if (dump_status == 0)
                    snprintf(dump_txt, sizeof dump_txt, "%s", T(dump_ms * 1e6));
                else if (dump_status == -1)
                    snprintf(dump_txt, sizeof dump_txt, "killed after 180 s");
                else
                    snprintf(dump_txt, sizeof dump_txt, "%s (exit %d)", T(dump_ms * 1e6), dump_status);
            }
        }
    }
    printf("| %s | %u | %.1f MB | %.1f | %u | %s | %s | %s |\n", what, st.capacity,
           (double)st.segment_bytes / 1048576.0, per_slot, st.held,
           do_walk ? T(walk_ms * 1e6) : "-", do_walk ? T(walk_per) : "-", dump_txt);
    if (csv)
        fprintf(csv, "%s,%u,%llu,%.1f,%u,%.3f,%.1f,%.1f,%d\n", what, st.capacity,
                (unsigned long long)st.segment_bytes, per_slot, st.held, walk_ms, walk_per, dump_ms,
                dump_status);
}

/* ======================================================================== */
/* Goals                                                                      */

static double g_load_start = NAN;
static FILE *g_goals;
static int g_npass, g_nmiss, g_nskip;

static void goal(int ok, const char *what, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    const char *verdict = ok < 0 ? "SKIP" : ok ? "PASS" : "MISS";
    if (ok < 0) g_nskip++; else if (ok) g_npass++; else g_nmiss++;
    printf("- **%s** %s: %s\n", verdict, what, detail);
    if (g_goals)
        fprintf(g_goals, "\"%s\",%s,\"%s\"\n", what, verdict, detail);
}

static void goals(void)
{
    printf("\n## Goals (issue 4), ratios from this run\n\n");
    double load_end[1] = { NAN };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (getloadavg(load_end, 1) < 1)
        load_end[0] = NAN;
    if (g_load_start > (double)ncpu || load_end[0] > (double)ncpu)
        printf("> **Warning:** load average %.2f at start, %.2f at end, on %ld CPUs: other work "
               "competed for the CPUs during this run and its timings are unreliable. Rerun on an "
               "idle machine before trusting these ratios.\n\n", g_load_start, load_end[0], ncpu);
    g_goals = csv_open("goals.csv", "goal,verdict,detail");
    double shm = R.s1_med[PEER_SHMLEASE], rm = R.s1_med[PEER_RMUTEX];
    double fl = R.s1_med[PEER_FLOCK], rd = R.s1_med[PEER_REDIS];

    if (!(cfg.scenarios & (1u << 1)) || isnan(shm) || isnan(rm))
        goal(-1, "uncontended acquire+release <= 2x robust mutex", "not measured");
    else
        goal(shm <= 2 * rm, "uncontended acquire+release <= 2x robust mutex",
             "shmlease %s / robust mutex %s = %.2fx (target <= 2x)", T(shm), T(rm), shm / rm);

    if (!(cfg.scenarios & (1u << 1)) || isnan(shm) || isnan(fl))
        goal(-1, "uncontended >= 75x faster than flock", "not measured");
    else
        goal(fl / shm >= 75, "uncontended >= 75x faster than flock",
             "flock %s / shmlease %s = %.1fx (target >= 75x)", T(fl), T(shm), fl / shm);

    if (!g_env.have_redis && isnan(rd))
        goal(-1, "uncontended >= 1000x faster than Redis", "redis skipped (%s)", g_env.redis_why);
    else if (isnan(shm) || isnan(rd))
        goal(-1, "uncontended >= 1000x faster than Redis", "not measured");
    else
        goal(rd / shm >= 1000, "uncontended >= 1000x faster than Redis",
             "redis %s / shmlease %s = %.0fx (target >= 1000x)", T(rd), T(shm), rd / shm);

    if (!(cfg.scenarios & (1u << 3))) {
        goal(-1, "contended acq/s >= robust mutex", "not measured");
    } else {
        char d[200] = "";
        size_t off = 0;
        int ok = 1;
        for (int i = 0; i < NPROCS; i++) {
            double a = R.s3_rate[PEER_SHMLEASE][i], b = R.s3_rate[PEER_RMUTEX][i];
            if (isnan(a) || isnan(b) || a < b)
                ok = 0;
            off += (size_t)snprintf(d + off, sizeof d - off, "%s%d procs %s vs %s = %.2fx",
                                    i ? "; " : "", g_nprocs[i], RATE(a), RATE(b), a / b);
            if (off >= sizeof d) break;
        }
        goal(ok, "contended acq/s >= robust mutex (2, 4, 8 procs)", "%s (target >= 1x each)", d);
    }

    double sm = R.s6_med[PEER_SHMLEASE], sp = R.s6_p99[PEER_SHMLEASE], fm = R.s6_med[PEER_FLOCK];
    if (!(cfg.scenarios & (1u << 6)) || isnan(sm) || isnan(fm))
        goal(-1, "crash takeover median <= flock's", "not measured");
    else
        goal(sm <= fm, "crash takeover median <= flock's", "shmlease %s vs flock %s = %.2fx (target <= 1x)",
             T(sm), T(fm), sm / fm);
    if (!(cfg.scenarios & (1u << 6)) || isnan(sp))
        goal(-1, "crash takeover p99 < 10 ms", "not measured");
    else
        goal(sp < 10e6, "crash takeover p99 < 10 ms", "shmlease p99 %s (target < 10 ms)", T(sp));

    if (!(cfg.scenarios & (1u << 4)) || R.s4_n < 2) {
        goal(-1, "many keys flat within 1.5x (1 to 1M live)", "not measured");
    } else {
        double mn = INFINITY, mx = 0;
        for (int i = 0; i < R.s4_n; i++) {
            if (R.s4_med[i] < mn) mn = R.s4_med[i];
            if (R.s4_med[i] > mx) mx = R.s4_med[i];
        }
        uint32_t top = R.s4_level[R.s4_n - 1];
        char what[96];
        snprintf(what, sizeof what, "many keys flat within 1.5x (1 to %u live%s)", top,
                 top < (1u << 20) ? (R.s4_big_skipped ? ", 1M skipped: no room in /dev/shm"
                                                      : ", 1M level not run in --quick") : "");
        goal(mx / mn <= 1.5, what, "slowest level %s / fastest %s = %.2fx (target <= 1.5x)", T(mx), T(mn),
             mx / mn);
    }
    if (g_goals)
        fclose(g_goals);
    printf("\n%d PASS, %d MISS, %d SKIP\n", g_npass, g_nmiss, g_nskip);
}

/* ======================================================================== */

static void header(void)
{
    struct utsname u;
    uname(&u);
    char cpu[128] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    c += 2;
                    c[strcspn(c, "\n")] = 0;
                    snprintf(cpu, sizeof cpu, "%s", c);
                }
                break;
            }
        fclose(f);
    }
    double load[3] = { 0 };
    if (getloadavg(load, 3) < 0)
        load[0] = NAN;
    g_load_start = load[0];
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));

    printf("# shmlease benchmarks%s\n\n", cfg.quick ? " (--quick)" : "");
    printf("- date: %s; host: Linux %s %s, %s, %ld CPUs online, load average %.2f at start\n", date,
           u.release, u.machine, cpu, sysconf(_SC_NPROCESSORS_ONLN), load[0]);
    printf("- build: shmlease %d.%d.%d, gcc %s, %s; processes are not pinned to CPUs\n",
           SHMLEASE_VERSION_MAJOR, SHMLEASE_VERSION_MINOR, SHMLEASE_VERSION_PATCH, __VERSION__,
#ifdef NDEBUG
           "optimised (NDEBUG)"
#else
           "assertions on"
#endif
    );
    printf("- clock: CLOCK_MONOTONIC; every number below comes from this one run\n");
    if (g_env.have_redis)
        printf("- redis: redis-server %s on a Unix socket in a temporary folder (--port 0 --save '' "
               "--appendonly no), through hiredis\n", g_env.redis_version);
    else
        printf("- redis: skipped (%s)\n", g_env.redis_why);
}

static void usage(FILE *f)
{
    fprintf(f,
"Usage: shmlease-bench [--quick] [--out DIR] [--dump-bin PATH] [--redis-server PATH]\n"
"                      [--no-redis] [--scenarios LIST]\n"
"  --quick            small counts, no 1M-key table (a 30-60 s smoke run)\n"
"  --out DIR          CSV files go here (default: .)\n"
"  --dump-bin PATH    shmlease-dump to time on the big table (optional)\n"
"  --redis-server P   the redis-server binary (default: redis-server in PATH)\n"
"  --no-redis         do not start Redis\n"
"  --scenarios LIST   e.g. 1,2,6 (default: all of 1-7; 7 runs with 4)\n"
"Markdown on stdout, progress on stderr. Exit 0: the run completed; 1: a lock\n"
"misbehaved (exclusion, hang, error); 2: usage or setup error.\n");
}

int main(int argc, char **argv)
{
    cfg.out = ".";
    cfg.scenarios = 0xfe;
    static const struct option lo[] = {
        { "quick", no_argument, NULL, 'q' },
        { "out", required_argument, NULL, 'o' },
        { "dump-bin", required_argument, NULL, 'd' },
        { "redis-server", required_argument, NULL, 'r' },
        { "no-redis", no_argument, NULL, 'n' },
        { "scenarios", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "qo:d:r:ns:h", lo, NULL)) != -1) {
        switch (c) {
        case 'q': cfg.quick = 1; break;
        case 'o': cfg.out = optarg; break;
        case 'd': cfg.dump_bin = optarg; break;
        case 'r': cfg.redis_bin = optarg; break;
        case 'n': cfg.no_redis = 1; break;
        case 's': {
            cfg.scenarios = 0;
            for (char *p = optarg; *p; p++)
                if (*p >= '1' && *p <= '7')
                    cfg.scenarios |= 1u << (*p - '0');
                else if (*p != ',') {
                    usage(stderr);
                    return 2;
                }
            if (cfg.scenarios & (1u << 7))
                cfg.scenarios |= 1u << 4;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (cfg.quick) {
        cfg.batches = 20;  cfg.batch_ms = 1;  cfg.warm_ms = 10;
        cfg.rounds = 3;    cfg.round_s = 0.15;
        cfg.wake_samples = 30;
        cfg.takeover_samples = 30;
        cfg.big_keys = 100000;
    } else {
        cfg.batches = 100; cfg.batch_ms = 4;  cfg.warm_ms = 50;
        cfg.rounds = 5;    cfg.round_s = 0.5;
        cfg.wake_samples = 200;
        cfg.takeover_samples = 200;
        cfg.big_keys = 1u << 20;
    }
    for (int i = 0; i < PEER__COUNT; i++) {
        R.s1_med[i] = R.s6_med[i] = R.s6_p99[i] = NAN;
        for (int j = 0; j < NPROCS; j++)
            R.s3_rate[i][j] = NAN;
    }
    mkdir(cfg.out, 0755);
    setvbuf(stdout, NULL, _IOLBF, 0);

    cleanup_init();
    int r = peers_setup();
    if (r < 0) {
        fprintf(stderr, "shmlease-bench: setup failed: %s (%s)\n", strerror(-r), shmlease_errname(r));
        cleanup_run();
        return 2;
    }
    if (cfg.no_redis)
        snprintf(g_env.redis_why, sizeof g_env.redis_why, "--no-redis");
    else
        redis_start(cfg.redis_bin);

    header();
    if (cfg.scenarios & (1u << 1)) scenario1();
    if (cfg.scenarios & (1u << 2)) scenario2();
    if (cfg.scenarios & (1u << 3)) scenario3();
    if (cfg.scenarios & (1u << 4)) scenario4();
    if (cfg.scenarios & (1u << 5)) scenario5();
    if (cfg.scenarios & (1u << 6)) scenario6();
    if (cfg.scenarios & (1u << 4)) scenario7();
    goals();

    redis_stop();
    cleanup_run();
    if (g_failed)
        printf("\nSome measurements FAILED (see ERROR above): a lock misbehaved or a scenario could not run.\n");
    fflush(stdout);
    return g_failed ? 1 : 0;
}
