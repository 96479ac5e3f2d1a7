/*
 * Scenario "shared": readers-writer throughput. 1, 2, 4, 8 and 16 processes
 * (--quick: 1, 4, 16) loop acquire, critical section, release on one key,
 * in two workloads: every acquire shared ("read"), and one in ten exclusive
 * ("mixed 90/10"). shmlease (mode SHMLEASE_SHARED / SHMLEASE_EXCLUSIVE)
 * beside a process-shared pthread_rwlock_t in a shared mapping
 * (rdlock/wrlock, unlock), set to prefer writers as shmlease does. The
 * critical section checks the readers-writer rule: no reader beside a
 * writer, never two writers. Writes shared.csv.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

enum { SP_RWLOCK, SP_SHMLEASE, SP__COUNT };
static const char *const g_sp_names[SP__COUNT] = { "rwlock", "shmlease" };

enum { WL_READ, WL_MIXED, WL__COUNT };
static const char *const g_wl_names[WL__COUNT] = { "read", "mixed 90/10" };
static const char *const g_wl_csv[WL__COUNT] = { "read", "mixed" };

#define SHARED_NP_MAX 5
static const int g_np_full[SHARED_NP_MAX] = { 1, 2, 4, 8, 16 };
static const int g_np_quick[] = { 1, 4, 16 };

/* In a mapping of its own, made before the workers are forked. */
struct rw_ctl {
    _Alignas(64) pthread_rwlock_t rw;
    _Alignas(64) uint32_t readers;        /* readers inside the critical section */
    uint32_t writer;                      /* 1 while a writer is inside */
    uint32_t violations;
    _Alignas(64) uint64_t writes[MAXP];   /* per process */
};
static struct rw_ctl *g_rw;

struct sworker { int peer, workload, me; };

/* The readers-writer rule, checked inside. 0, or 1 on a violation. */
static int cs_read(void)
{
    __atomic_fetch_add(&g_rw->readers, 1, __ATOMIC_ACQ_REL);
    int bad = __atomic_load_n(&g_rw->writer, __ATOMIC_ACQUIRE) != 0;
    __atomic_fetch_sub(&g_rw->readers, 1, __ATOMIC_ACQ_REL);
    return bad;
}

static int cs_write(void)
{
    int bad = __atomic_exchange_n(&g_rw->writer, 1, __ATOMIC_ACQ_REL) != 0;
    bad |= __atomic_load_n(&g_rw->readers, __ATOMIC_ACQUIRE) != 0;
    __atomic_store_n(&g_rw->writer, 0, __ATOMIC_RELEASE);
    return bad;
}

static int sworker_child(void *arg)
{
    struct sworker *a = arg;
    struct shared *sh = g_env.sh;
    shmlease_table *t = NULL;
    int r = 0;
    if (a->peer == SP_SHMLEASE)
        r = shmlease_open(g_env.table_name, NULL, &t);
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_ACQ_REL);
    if (r != 0) {
        sh->errors[a->me] = r;
        return 1;
    }
    if (wait_u32_ge(&sh->go, 1, 60000) < 0)
        return 2;
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(a->me + 1), n = 0, w = 0;
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = LONG_TTL_MS;
    o.wait_ms = SHMLEASE_WAIT_FOREVER;
    shmlease_lease l;
    while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int write = a->workload == WL_MIXED && x % 10 == 0;
        if (a->peer == SP_SHMLEASE) {
            o.mode = write ? SHMLEASE_EXCLUSIVE : SHMLEASE_SHARED;
            if ((r = shmlease_acquire(t, BENCH_KEY, &o, &l)) != 0)
                break;
        } else if ((r = -(write ? pthread_rwlock_wrlock(&g_rw->rw)
                                : pthread_rwlock_rdlock(&g_rw->rw))) != 0) {
            break;
        }
        if (write ? cs_write() : cs_read()) {
            __atomic_fetch_add(&g_rw->violations, 1, __ATOMIC_RELAXED);
            abort();
        }
        n++;
        w += (uint64_t)write;
        r = a->peer == SP_SHMLEASE ? shmlease_release(t, &l) : -pthread_rwlock_unlock(&g_rw->rw);
        if (r != 0)
            break;
    }
    sh->counts[a->me] = n;
    g_rw->writes[a->me] = w;
    if (r != 0)
        sh->errors[a->me] = r;
    shmlease_close(t);
    return r ? 1 : 0;
}

/* One round: NULL with the rates, or what went wrong. */
static const char *shared_round(int peer, int wl, int np, double *rate, double *wrate)
{
    static char ebuf[160];
    struct shared *sh = g_env.sh;
    reset_ctl();
    g_rw->readers = g_rw->writer = g_rw->violations = 0;
    memset(g_rw->writes, 0, sizeof g_rw->writes);
    pid_t kids[MAXP] = { 0 };
    struct sworker args[MAXP];
    const char *err = NULL;
    for (int i = 0; i < np && !err; i++) {
        args[i] = (struct sworker){ .peer = peer, .workload = wl, .me = i };
        if ((kids[i] = spawn(sworker_child, &args[i])) < 0)
            err = "fork failed";
    }
    if (!err && wait_u32_ge(&sh->ready, (uint32_t)np, 20000) < 0)
        err = "workers did not start";
    uint64_t ta = now_ns();
    __atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
    if (!err)
        sleep_us((long)(g_cfg.round_s * 1e6));
    __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
    uint64_t tb = now_ns();
    int hung = 0, bad = 0;
    for (int i = 0; i < np; i++) {
        int st = 0;
        if (kids[i] <= 0)
            continue;
        if (wait_child(kids[i], 20000, &st) < 0) {
            hung++;
            kill_child(kids[i]);
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            bad++;
        }
    }
    if (err)
        return err;
    if (g_rw->violations) {
        snprintf(ebuf, sizeof ebuf, "READERS-WRITER RULE VIOLATED (%u times)", g_rw->violations);
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
        snprintf(ebuf, sizeof ebuf, "%d workers failed (%s)", bad, e ? peer_errname(e) : "no lock error");
        return ebuf;
    }
    uint64_t sum = 0, wsum = 0;
    for (int i = 0; i < np; i++) {
        sum += sh->counts[i];
        wsum += g_rw->writes[i];
    }
    double secs = (double)(tb - ta) / 1e9;
    *rate = (double)sum / secs;
    *wrate = (double)wsum / secs;
    return NULL;
}

static int rwlock_init(void)
{
    g_rw = shared_alloc(sizeof *g_rw);
    if (!g_rw)
        return -ENOMEM;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    /* As shmlease: a waiting writer holds back new readers. */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int r = pthread_rwlock_init(&g_rw->rw, &a);
    pthread_rwlockattr_destroy(&a);
    return -r;
}

void scenario_shared(void)
{
    const int *nps = g_cfg.quick ? g_np_quick : g_np_full;
    int nnp = g_cfg.quick ? (int)(sizeof g_np_quick / sizeof g_np_quick[0]) : SHARED_NP_MAX;
    char counts[64] = "";
    for (int i = 0, off = 0; i < nnp; i++)
        off += snprintf(counts + off, sizeof counts - (size_t)off, "%s%d", i ? ", " : "", nps[i]);
    printf("\n## `shared`: readers and writers, %s processes on one key\n\n", counts);
    printf("Each process loops: blocking acquire; critical section (a reader counts itself in "
           "and checks that no writer is inside; a writer checks that nobody else is, and aborts "
           "otherwise); release. `read`: every acquire shared (shmlease `SHMLEASE_SHARED`, "
           "`pthread_rwlock_rdlock`); `mixed 90/10`: one acquire in ten, drawn at random, "
           "exclusive (`SHMLEASE_EXCLUSIVE`, `pthread_rwlock_wrlock`). The rwlock is "
           "`PTHREAD_PROCESS_SHARED` in a shared mapping and prefers writers, as shmlease does "
           "(`PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`); unlike a lease it has no TTL, "
           "no token and no recovery from a dead holder. %d rounds of %.2f s; acq/s = "
           "acquisitions per second of all processes together (median and worst round), "
           "writes/s the exclusive ones among them.\n\n", g_cfg.rounds, g_cfg.round_s);
    if (rwlock_init() != 0) {
        printf("ERROR: pthread_rwlock_init failed\n");
        g_failed = 1;
        return;
    }
    printf("| procs | workload | peer | acq/s median | acq/s worst | writes/s median | shmlease / rwlock |\n");
    printf("|---:|---|---|---:|---:|---:|---:|\n");
    FILE *csv = csv_open("shared.csv",
                         "peer,workload,procs,acq_per_s_median,acq_per_s_worst,writes_per_s_median,rounds");
    int nr = g_cfg.rounds > 64 ? 64 : g_cfg.rounds;
    for (int wl = 0; wl < WL__COUNT; wl++)
        for (int k = 0; k < nnp; k++) {
            double med[SP__COUNT] = { NAN, NAN };
            for (int peer = 0; peer < SP__COUNT; peer++) {
                double rates[64], wrates[64];
                const char *err = NULL;
                for (int r = 0; r < nr && !err; r++) {
                    progress("[shared] %s, %s, %d procs, round %d/%d", g_sp_names[peer],
                             g_wl_names[wl], nps[k], r + 1, nr);
                    err = shared_round(peer, wl, nps[k], &rates[r], &wrates[r]);
                }
                if (err) {
                    printf("| %d | %s | %s | ERROR: %s | | | |\n", nps[k], g_wl_names[wl],
                           g_sp_names[peer], err);
                    g_failed = 1;
                    continue;
                }
                struct summary sr, sw;
                summarize(rates, nr, &sr);
                summarize(wrates, nr, &sw);
                med[peer] = sr.median;
                printf("| %d | %s | %s | %s | %s | %s | %s |\n", nps[k], g_wl_names[wl],
                       g_sp_names[peer], RATE(sr.median), RATE(sr.min), RATE(sw.median),
                       peer == SP_SHMLEASE ? X(med[SP_SHMLEASE] / med[SP_RWLOCK]) : "");
                if (csv)
                    fprintf(csv, "%s,%s,%d,%.1f,%.1f,%.1f,%d\n", g_sp_names[peer], g_wl_csv[wl],
                            nps[k], sr.median, sr.min, sw.median, nr);
            }
        }
    if (csv)
        fclose(csv);
    printf("\nEvery shared holder of a shmlease key has its own lease (token, deadline, "
           "metadata): a shared acquire claims a holder slot of its own and a release frees it, "
           "where a rwlock read-lock is one counter increment.\n");
}
