/*
 * Scenario "memory": bytes per slot of a default table and of the manykeys
 * table; the time of shmlease_foreach and of shmlease-dump over the latter,
 * still full; and shmlease-dump of a table of its own holding 100,000
 * leases, text and JSON (the goal's figure). Writes memory.csv and
 * memory_dump.csv.
 */
#include "bench.h"

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int count_cb(const shmlease_info *info, void *arg)
{
    (void)info;
    (*(uint64_t *)arg)++;
    return 0;
}

/* One run of shmlease-dump [--json] NAME, output to /dev/null: its wall
 * time from fork to exit in *ms, its exit status (-1: killed after 180 s). */
static int run_dump(const char *name, int json, double *ms, int *status)
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
        if (json)
            execl(g_cfg.dump_bin, g_cfg.dump_bin, "--json", name, (char *)NULL);
        else
            execl(g_cfg.dump_bin, g_cfg.dump_bin, name, (char *)NULL);
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

/* Up to 3 walks of shmlease_foreach over t (fewer when one takes over 3 s):
 * the median in *ms, per lease in *per. */
static void time_foreach(shmlease_table *t, const shmlease_stats *st, double *ms, double *per)
{
    double w[3];
    int nw = 0, r = 0;
    uint64_t visited = 0;
    for (; nw < 3; nw++) {
        progress("[memory] foreach over %u held leases, walk %d", st->held, nw + 1);
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
    *ms = s.median;
    *per = visited ? *ms * 1e6 / (double)visited : NAN;
    g_res.foreach_ms = s.median;
    g_res.foreach_held = (uint32_t)visited;
    if (r != 0 || visited < st->held) {
        printf("(foreach returned %d after %llu of %u held leases)\n\n", r,
               (unsigned long long)visited, st->held);
        g_failed = 1;
    }
}

/* One run of shmlease-dump on the table: *ms, *status and the table's text. */
static void time_dump(const char *name, double *ms, int *status, char *txt, size_t n)
{
    if (!g_cfg.dump_bin || access(g_cfg.dump_bin, X_OK) != 0) {
        snprintf(txt, n, "skipped (not built)");
        return;
    }
    progress("[memory] shmlease-dump on the big table");
    if (run_dump(name, 0, ms, status) != 0)
        return;
    if (*status == 0)
        snprintf(txt, n, "%s", T(*ms * 1e6));
    else if (*status == -1)
        snprintf(txt, n, "killed after 180 s");
    else
        snprintf(txt, n, "%s (exit %d)", T(*ms * 1e6), *status);
}

/* One table's row: its size from shmlease_stats_get; with do_walk and
 * do_dump, the foreach and shmlease-dump timings. */
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
        time_foreach(t, &st, &walk_ms, &walk_per);
        g_res.slot_bytes_big = per_slot;
    }
    if (do_dump)
        time_dump(name, &dump_ms, &dump_status, dump_txt, sizeof dump_txt);
    printf("| %s | %u | %.1f MB | %.1f | %u | %s | %s | %s |\n", what, st.capacity,
           (double)st.segment_bytes / 1048576.0, per_slot, st.held,
           do_walk ? T(walk_ms * 1e6) : "-", do_walk ? T(walk_per) : "-", dump_txt);
    if (csv)
        fprintf(csv, "%s,%u,%llu,%.1f,%u,%.3f,%.1f,%.1f,%d\n", what, st.capacity,
                (unsigned long long)st.segment_bytes, per_slot, st.held, walk_ms, walk_per, dump_ms,
                dump_status);
}

#define DUMP_LEASES      100000u   /* the goal's table */
#define DUMP_LEASES_QUICK 10000u
#define DUMP_RUNS        5

/* Fills T with n held leases ("bench/lease-N", metadata "worker-K"): 0 or
 * the failing acquire's result. */
static int dump_fill(shmlease_table *t, uint32_t n)
{
    shmlease_acquire_opts ao = { .ttl_ms = LONG_TTL_MS, .wait_ms = 0 };
    for (uint32_t i = 0; i < n; i++) {
        char k[32], m[16];
        shmlease_lease l;
        snprintf(k, sizeof k, "bench/lease-%u", i);
        ao.metadata = m;
        ao.metadata_len = (size_t)snprintf(m, sizeof m, "worker-%u", i % 64);
        int r = shmlease_acquire(t, k, &ao, &l);
        if (r != 0)
            return r;
    }
    return 0;
}

/* DUMP_RUNS runs of the dump on NAME in each format, text and JSON in
 * turn; the medians in g_res, one table row and CSV line per format. */
static void dump_runs(const char *name, uint32_t n, FILE *csv)
{
    double w[2][DUMP_RUNS];
    int nw[2] = { 0, 0 }, bad[2] = { 0, 0 };
    for (int r = 0; r < DUMP_RUNS; r++)
        for (int json = 0; json < 2; json++) {
            int status = 0;
            double ms = NAN;
            progress("[memory] shmlease-dump%s of %u leases, run %d", json ? " --json" : "", n, r + 1);
            if (run_dump(name, json, &ms, &status) != 0 || status != 0)
                bad[json] = status ? status : -1;
            else
                w[json][nw[json]++] = ms;
        }
    for (int json = 0; json < 2; json++) {
        struct summary s;
        summarize(w[json], nw[json], &s);           /* NAN when no run succeeded */
        if (json)
            g_res.dump_json_ms = s.median;
        else
            g_res.dump_text_ms = s.median;
        printf("| %s | %u | %s | %s | %s | %d |%s\n", json ? "--json" : "text (default)", n,
               T(s.median * 1e6), T(s.min * 1e6), T(s.max * 1e6), nw[json],
               bad[json] ? " ERROR: a run failed |" : "");
        if (csv)
            fprintf(csv, "%s,%u,%.3f,%.3f,%.3f,%d,%d\n", json ? "json" : "text", n, s.median,
                    s.min, s.max, nw[json], bad[json]);
        if (bad[json])
            g_failed = 1;
    }
}

/* shmlease-dump of a table of its own holding DUMP_LEASES leases (held by
 * this process: alive), text and JSON, output to /dev/null. */
static void memory_dump(void)
{
    uint32_t n = g_cfg.quick ? DUMP_LEASES_QUICK : DUMP_LEASES;
    printf("\nshmlease-dump of a table of capacity %u holding %u leases (keys `bench/lease-N`, "
           "metadata `worker-K`, one live holder), output to /dev/null; wall time from fork to exit, "
           "%d runs per format, text and JSON in turn. The goal is the text output's median "
           "(the default output).\n\n", n, n, DUMP_RUNS);
    printf("| output | leases | median | min | max | runs |\n|---|---:|---:|---:|---:|---:|\n");
    if (!g_cfg.dump_bin || access(g_cfg.dump_bin, X_OK) != 0) {
        printf("| skipped (shmlease-dump not built) | | | | | |\n");
        return;
    }
    char name[96];
    snprintf(name, sizeof name, "bench-%d-dump", (int)getpid());
    shmlease_options o = { .capacity = n, .flags = SHMLEASE_OPEN_EXCL };
    shmlease_table *t = NULL;
    int r = shmlease_open(name, &o, &t);
    if (r != 0) {
        printf("| skipped: shmlease_open(capacity %u): %s | | | | | |\n", n, peer_errname(r));
        return;
    }
    cleanup_add_shm(name);
    progress("[memory] filling a table with %u leases for shmlease-dump", n);
    r = dump_fill(t, n);
    FILE *csv = csv_open("memory_dump.csv", "output,leases,median_ms,min_ms,max_ms,runs,failed_status");
    if (r != 0) {
        printf("| ERROR filling: %s | | | | | |\n", peer_errname(r));
        g_failed = 1;
    } else {
        g_res.dump_leases = n;
        dump_runs(name, n, csv);
    }
    if (csv)
        fclose(csv);
    shmlease_unlink(name);
    shmlease_close(t);
}

void scenario_memory(void)
{
    printf("\n## `memory`: memory and walking a big table\n\n");
    printf("bytes/slot = segment_bytes / capacity from shmlease_stats_get (the whole segment: "
           "header, registry, index and entries, divided by the slots). foreach = one "
           "shmlease_foreach over the manykeys table, still full (median of up to 3 walks); "
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
        memory_rows(mcsv, "full manykeys table", g_big.meas, 1, 1, g_big.name);
        progress("[memory] closing the big table");
        shmlease_unlink(g_big.name);
        shmlease_close(g_big.meas);
        shmlease_close(g_big.fill);
        g_big.meas = g_big.fill = NULL;
    }
    if (mcsv)
        fclose(mcsv);
    memory_dump();
}
