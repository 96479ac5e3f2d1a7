/*
 * Scenario "contended": 2 to 128 processes (g_nprocs) loop acquire, critical
 * section, release on one key; acquisitions/s, owner changes/s, fairness. The critical
 * section checks mutual exclusion, lost updates and (shmlease) fencing tokens.
 * Writes contended.csv.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

struct worker_arg { int id; int me; };

static int worker_child(void *arg)
{
    struct worker_arg *a = arg;
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
        if (a->id == PEER_SHMLEASE || a->id == PEER_SHMLEASE_FAIR) {   /* tokens grow with every claim */
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

static shmlease_table *g_stats_handle;   /* the parent's view of the bench table */
static char g_stats_note[256];

/* How the workers of one round ended. */
struct reaped { int hung, bad, badsig, badcode; };

/* Starts np workers and waits until they are ready: NULL, or what failed.
 * kids[i] <= 0 for a worker not started. */
static const char *start_workers(int id, int np, pid_t *kids, struct worker_arg *args)
{
    for (int i = 0; i < np; i++) {
        args[i].id = id;
        args[i].me = i;
        if ((kids[i] = spawn(worker_child, &args[i])) < 0)
            return "fork failed";
    }
    if (wait_u32_ge(&g_env.sh->ready, (uint32_t)np, 20000) < 0)
        return "workers did not start";
    return NULL;
}

static void reap_workers(int np, const pid_t *kids, struct reaped *rp)
{
    memset(rp, 0, sizeof *rp);
    for (int i = 0; i < np; i++) {
        if (kids[i] <= 0)
            continue;
        int st = 0;
        if (wait_child(kids[i], 20000, &st) < 0) {
            rp->hung++;
            kill_child(kids[i]);
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            rp->bad++;
            if (WIFSIGNALED(st))
                rp->badsig = WTERMSIG(st);
            else if (WIFEXITED(st))
                rp->badcode = WEXITSTATUS(st);
        }
    }
}

/* What went wrong in a round, in ebuf, or NULL. */
static const char *round_error(int np, const struct reaped *rp, char *ebuf, size_t n)
{
    struct shared *sh = g_env.sh;
    if (sh->violations) {
        snprintf(ebuf, n, "MUTUAL EXCLUSION VIOLATED (%u times)", sh->violations);
        return ebuf;
    }
    if (sh->token_violations) {
        snprintf(ebuf, n, "FENCING TOKEN NOT GREATER THAN THE PREVIOUS CLAIM'S");
        return ebuf;
    }
    if (rp->hung) {
        snprintf(ebuf, n, "HANG: %d of %d workers still waiting 20 s after stop", rp->hung, np);
        return ebuf;
    }
    if (rp->bad) {
        int e = 0;
        for (int i = 0; i < np; i++)
            if (sh->errors[i]) e = sh->errors[i];
        if (rp->badsig)
            snprintf(ebuf, n, "%d workers failed (signal %d)", rp->bad, rp->badsig);
        else
            snprintf(ebuf, n, "%d workers failed (%s, exit %d: 1 lock error, 2 no start signal "
                     "within 60 s, 99 orphaned)", rp->bad, e ? peer_errname(e) : "no lock error",
                     rp->badcode);
        return ebuf;
    }
    return NULL;
}

/* Notes (once) when the table's acquisitions counter disagrees with the workers'. */
static void check_stats(int np, const shmlease_stats *st0, uint64_t sum)
{
    shmlease_stats st1;
    if (shmlease_stats_get(g_stats_handle, &st1) == 0 && !g_stats_note[0] &&
        st1.acquisitions - st0->acquisitions != sum)
        snprintf(g_stats_note, sizeof g_stats_note,
                 "shmlease_stats_get disagrees with the workers (%d procs): %llu acquisitions "
                 "counted by the table, %llu by the workers",
                 np, (unsigned long long)(st1.acquisitions - st0->acquisitions), (unsigned long long)sum);
}

/* One round: NULL and rate/fairness/owner-change rate, or an error string. */
static const char *contended_round(int id, int np, double *rate, double *fair, double *chg)
{
    static char ebuf[128];
    struct shared *sh = g_env.sh;
    shmlease_stats st0;
    int have_stats = id == PEER_SHMLEASE && g_stats_handle &&
                     shmlease_stats_get(g_stats_handle, &st0) == 0;
    reset_ctl();
    sh->cas_word = 0;
    pid_t kids[MAXP] = { 0 };
    struct worker_arg args[MAXP];
    const char *err = start_workers(id, np, kids, args);
    uint64_t ta = 0, tb = 0;
    if (!err) {
        ta = now_ns();
        __atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
        sleep_us((long)(g_cfg.round_s * 1e6));
        __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
        tb = now_ns();
    } else {
        __atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
        __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
    }
    struct reaped rp;
    reap_workers(np, kids, &rp);
    if (err || (err = round_error(np, &rp, ebuf, sizeof ebuf)) != NULL)
        return err;
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
    if (have_stats)
        check_stats(np, &st0, sum);
    double secs = (double)(tb - ta) / 1e9;
    *rate = (double)sum / secs;
    *chg = (double)sh->owner_changes / secs;
    *fair = mn ? (double)mx / (double)mn : INFINITY;
    return NULL;
}

static const int g_ids[] = { PEER_CAS, PEER_RMUTEX, PEER_SHMLEASE, PEER_SHMLEASE_FAIR, PEER_OFD, PEER_FLOCK,
                              PEER_SEM };
enum { NIDS = sizeof g_ids / sizeof g_ids[0] };

/* One peer at one process count, over its rounds. */
struct cell { int ok; double rate, worst, chg, fair, fair_worst; int rounds; };

/* Runs the rounds of one peer at np processes (index pi_ of g_nprocs) and
 * prints its table row. */
static void measure_cell(int id, int pi_, struct cell *c)
{
    int np = g_nprocs[pi_];
    const char *name = peer(id)->name;
    double rates[64], fairs[64], chgs[64];
    int nr = np > 8 ? g_cfg.rounds_big : g_cfg.rounds;
    nr = nr > 64 ? 64 : nr;
    const char *err = NULL;
    for (int r = 0; r < nr && !err; r++) {
        progress("[contended] %s, %d procs, round %d/%d", name, np, r + 1, nr);
        err = contended_round(id, np, &rates[r], &fairs[r], &chgs[r]);
    }
    if (err) {
        printf("| %d | %s | ERROR: %s | | | | |\n", np, name, err);
        g_failed = 1;
        g_res.contended_rate[id][pi_] = NAN;
        return;
    }
    struct summary sr, sf, sc;
    summarize(rates, nr, &sr);
    summarize(fairs, nr, &sf);
    summarize(chgs, nr, &sc);
    g_res.contended_rate[id][pi_] = sr.median;
    g_res.contended_chg[id][pi_] = sc.median;
    printf("| %d | %s | %s | %s | %s | %s | %s |\n", np, name, RATE(sr.median), RATE(sr.min),
           RATE(sc.median), FAIR(sf.median), FAIR(sf.max));
    *c = (struct cell){ .ok = 1, .rate = sr.median, .worst = sr.min, .chg = sc.median,
                        .fair = sf.median, .fair_worst = sf.max, .rounds = nr };
}

/* One block of rows per peer (the plots draw one line per peer). */
static void write_csv(FILE *csv, struct cell res[NIDS][NPROCS])
{
    for (size_t k = 0; csv && k < NIDS; k++)
        for (int pi_ = 0; pi_ < g_nprocs_n; pi_++) {
            const struct cell *c = &res[k][pi_];
            if (c->ok)
                fprintf(csv, "%s,%d,%.1f,%.1f,%.1f,%.3f,%.3f,%d\n", peer(g_ids[k])->name, g_nprocs[pi_],
                        c->rate, c->worst, c->chg, isinf(c->fair) ? 1e9 : c->fair,
                        isinf(c->fair_worst) ? 1e9 : c->fair_worst, c->rounds);
        }
    if (csv)
        fclose(csv);
}

void scenario_contended(void)
{
    char counts[64] = "";
    for (int i = 0, off = 0; i < g_nprocs_n && off < (int)sizeof counts; i++)
        off += snprintf(counts + off, sizeof counts - (size_t)off, "%s%d", i ? ", " : "", g_nprocs[i]);
    printf("\n## `contended`: %s processes on one key\n\n", counts);
    printf("Each process loops: blocking acquire; critical section (claims an 'inside' flag "
           "and aborts if it was already set; increments a shared counter without atomics); "
           "release. %d rounds of %.2f s each (%d rounds above 8 processes); acq/s = acquisitions per second of all processes "
           "together, median and worst round; owner changes/s counts "
           "only acquisitions by a different process than the previous one; fairness = max/min "
           "acquisitions per process (1.00 = even; inf = a process starved), median and worst round. "
           "The counter is checked against the sum of acquisitions after each round.\n\n",
           g_cfg.rounds, g_cfg.round_s, g_cfg.rounds_big);
    printf("| procs | peer | acq/s median | acq/s worst | owner changes/s | fairness median | fairness worst |\n");
    printf("|---:|---|---:|---:|---:|---:|---:|\n");
    FILE *csv = csv_open("contended.csv",
                         "peer,procs,acq_per_s_median,acq_per_s_worst,owner_changes_per_s_median,fairness_median,fairness_worst,rounds");
    struct cell res[NIDS][NPROCS];
    memset(res, 0, sizeof res);
    if (shmlease_open(g_env.table_name, NULL, &g_stats_handle) != 0)
        g_stats_handle = NULL;
    for (int pi_ = 0; pi_ < g_nprocs_n; pi_++)
        for (size_t k = 0; k < NIDS; k++)
            measure_cell(g_ids[k], pi_, &res[k][pi_]);
    write_csv(csv, res);
    printf("\ncas-word spins (pause, sched_yield every 16 tries): a floor for the handoff "
           "itself, not a lock anyone should block on. shmlease rounds also check that every "
           "claim's fencing token exceeds the previous claim's, and that the table's "
           "acquisitions counter (shmlease_stats_get) matches the workers' count: %s.\n",
           !g_stats_handle ? "not checked (no handle)" : g_stats_note[0] ? g_stats_note : "it does");
    shmlease_close(g_stats_handle);
    g_stats_handle = NULL;
}
