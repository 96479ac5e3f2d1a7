/*
 * The goals: one PASS/MISS/SKIP line each, a ratio from this run. Writes
 * goals.csv.
 */
#include "bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

double g_load_start = NAN;
static FILE *g_goals;
static int g_npass, g_nmiss, g_nskip;

static void goal(int ok, const char *what, const char *fmt, ...)
{
    char detail[1200];
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

/* A warning when the load average exceeded the CPUs at the start or the end. */
static void load_warning(void)
{
    double load_end[1] = { NAN };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (getloadavg(load_end, 1) < 1)
        load_end[0] = NAN;
    if (g_load_start > (double)ncpu || load_end[0] > (double)ncpu)
        printf("> **Warning:** load average %.2f at start, %.2f at end, on %ld CPUs: other work "
               "competed for the CPUs during this run and its timings are unreliable. Rerun on an "
               "idle machine before trusting these ratios.\n\n", g_load_start, load_end[0], ncpu);
}

static void goals_uncontended(void)
{
    double shm = g_res.uncontended_med[PEER_SHMLEASE], rm = g_res.uncontended_med[PEER_RMUTEX];
    double fl = g_res.uncontended_med[PEER_FLOCK], rd = g_res.uncontended_med[PEER_REDIS];

    if (!scenario_selected(SC_UNCONTENDED) || isnan(shm) || isnan(rm))
        goal(-1, "uncontended acquire+release <= 2x robust mutex", "not measured");
    else
        goal(shm <= 2 * rm, "uncontended acquire+release <= 2x robust mutex",
             "shmlease %s / robust mutex %s = %.2fx (target <= 2x)", T(shm), T(rm), shm / rm);

    if (!scenario_selected(SC_UNCONTENDED) || isnan(shm) || isnan(fl))
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
}

/* The better of robust mutex and flock at process count index I: their acq/s
 * and owner changes/s (the peer with more acquisitions). */
static const char *better_peer(int i, double *rate, double *chg)
{
    double rm = g_res.contended_rate[PEER_RMUTEX][i], fl = g_res.contended_rate[PEER_FLOCK][i];
    int id = isnan(fl) || (!isnan(rm) && rm >= fl) ? PEER_RMUTEX : PEER_FLOCK;
    *rate = g_res.contended_rate[id][i];
    *chg = g_res.contended_chg[id][i];
    return id == PEER_RMUTEX ? "robust mutex" : "flock";
}

static void goals_contended(void)
{
    if (!scenario_selected(SC_CONTENDED)) {
        goal(-1, "contended acq/s >= the better of robust mutex and flock", "not measured");
        return;
    }
    char d[1024] = "", what[128];
    size_t off = 0;
    int ok = 1;
    for (int i = 0; i < g_nprocs_n && off < sizeof d; i++) {
        double a = g_res.contended_rate[PEER_SHMLEASE][i], ac = g_res.contended_chg[PEER_SHMLEASE][i];
        double b, bc;
        const char *bn = better_peer(i, &b, &bc);
        if (isnan(a) || isnan(b) || a < b)
            ok = 0;
        off += (size_t)snprintf(d + off, sizeof d - off,
                                "%s%d procs: %s vs %s %s = %.2fx (owner changes/s %s vs %s)%s",
                                i ? "; " : "", g_nprocs[i], RATE(a), bn, RATE(b), a / b, RATE(ac),
                                RATE(bc), isnan(a) || isnan(b) || a < b ? " MISSED" : "");
    }
    off = 0;
    for (int i = 0; i < g_nprocs_n && off < sizeof what; i++)
        off += (size_t)snprintf(what + off, sizeof what - off, "%s%d", i ? ", " : "", g_nprocs[i]);
    char title[200];
    snprintf(title, sizeof title, "contended acq/s >= the better of robust mutex and flock (%s procs)", what);
    goal(ok, title, "%s (target >= 1x each)", d);
}

static void goals_takeover(void)
{
    double sm = g_res.takeover_med[PEER_SHMLEASE], sp = g_res.takeover_p99[PEER_SHMLEASE];
    double fm = g_res.takeover_med[PEER_FLOCK];
    if (!scenario_selected(SC_TAKEOVER) || isnan(sm) || isnan(fm))
        goal(-1, "crash takeover median <= flock's", "not measured");
    else
        goal(sm <= fm, "crash takeover median <= flock's", "shmlease %s vs flock %s = %.2fx (target <= 1x)",
             T(sm), T(fm), sm / fm);
    if (!scenario_selected(SC_TAKEOVER) || isnan(sp))
        goal(-1, "crash takeover p99 < 10 ms", "not measured");
    else
        goal(sp < 10e6, "crash takeover p99 < 10 ms", "shmlease p99 %s (target < 10 ms)", T(sp));
}

static void goals_manykeys(void)
{
    if (!scenario_selected(SC_MANYKEYS) || g_res.manykeys_n < 2) {
        goal(-1, "many keys flat within 1.5x (1 to 1M live)", "not measured");
        return;
    }
    double mn = INFINITY, mx = 0;
    for (int i = 0; i < g_res.manykeys_n; i++) {
        if (g_res.manykeys_med[i] < mn) mn = g_res.manykeys_med[i];
        if (g_res.manykeys_med[i] > mx) mx = g_res.manykeys_med[i];
    }
    uint32_t top = g_res.manykeys_level[g_res.manykeys_n - 1];
    char what[96];
    snprintf(what, sizeof what, "many keys flat within 1.5x (1 to %u live%s)", top,
             top < (1u << 20) ? (g_res.manykeys_big_skipped ? ", 1M skipped: no room in /dev/shm"
                                                            : ", 1M level not run in --quick") : "");
    goal(mx / mn <= 1.5, what, "slowest level %s / fastest %s = %.2fx (target <= 1.5x)", T(mx), T(mn),
         mx / mn);
}

static void goals_attach(void)
{
    double a = g_res.attach_med, f = g_res.attach_flock_med;
    if (!scenario_selected(SC_ATTACH) || isnan(a))
        goal(-1, "attach (open+close) <= 50 us", "not measured");
    else
        goal(a <= 50e3, "attach (open+close) <= 50 us", "shmlease_open+close %s; open+flock+close %s",
             T(a), T(f));
}

/* A refused try on a lock another process holds, against a refused
 * pthread_mutex_trylock (issue 11, goal 2). */
static void goals_trybusy(void)
{
    const char *w = "try on a key held by a live process <= 4x a refused mutex trylock";
    double shm = g_res.trybusy_med[PEER_SHMLEASE], rm = g_res.trybusy_med[PEER_RMUTEX];
    if (!scenario_selected(SC_TRYBUSY) || isnan(shm) || isnan(rm))
        goal(-1, w, "not measured");
    else
        goal(shm <= 4 * rm, w, "shmlease %s / trylock %s = %.2fx (target <= 4x)", T(shm), T(rm),
             shm / rm);
}

/* Memory per lease slot of the big manykeys table (goal 6). */
static void goals_slot_bytes(void)
{
    const char *w = "memory per lease slot <= 256 B (1M-key table)";
    double b = g_res.slot_bytes_big;
    if (!scenario_selected(SC_MEMORY) || isnan(b))
        goal(-1, w, "not measured");
    else
        goal(b <= 256, w, "%.1f B/slot (target <= 256; docs/file-format.md section 9 says what "
             "each byte is for)", b);
}

/* Inspection at scale: one shmlease_foreach over the 1M-key table, and
 * shmlease-dump of 100,000 held leases (text, the default output). */
static void goals_inspection(void)
{
    const char *fw = "foreach over 1M held leases <= 100 ms";
    if (!scenario_selected(SC_MEMORY) || g_res.foreach_held == 0)
        goal(-1, fw, "not measured");
    else if (g_res.foreach_held < (1u << 20))
        goal(-1, fw, "only %u leases were held (%s): not the goal's size", g_res.foreach_held,
             T(g_res.foreach_ms * 1e6));
    else
        goal(g_res.foreach_ms <= 100, fw, "%s over %u leases (target <= 100 ms)",
             T(g_res.foreach_ms * 1e6), g_res.foreach_held);

    const char *dw = "shmlease-dump of 100,000 held leases <= 150 ms (text output)";
    double d = g_res.dump_text_ms, j = g_res.dump_json_ms;
    if (!scenario_selected(SC_MEMORY) || g_res.dump_leases == 0 || isnan(d))
        goal(-1, dw, "not measured");
    else if (g_res.dump_leases < 100000)
        goal(-1, dw, "%u leases in --quick: text %s, JSON %s; not the goal's size", g_res.dump_leases,
             T(d * 1e6), T(j * 1e6));
    else
        goal(d <= 150, dw, "text %s (target <= 150 ms); JSON %s", T(d * 1e6), T(j * 1e6));
}

void goals(void)
{
    printf("\n## Goals, ratios from this run\n\n");
    load_warning();
    g_goals = csv_open("goals.csv", "goal,verdict,detail");
    goals_uncontended();
    goals_contended();
    goals_takeover();
    goals_manykeys();
    goals_attach();
    goals_trybusy();
    goals_slot_bytes();
    goals_inspection();
    if (g_goals)
        fclose(g_goals);
    printf("\n%d PASS, %d MISS, %d SKIP\n", g_npass, g_nmiss, g_nskip);
}
