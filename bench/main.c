/*
 * shmlease-bench: shmlease beside the locks users would pick instead, in the
 * same run on the same machine. Prints a Markdown report on stdout (progress
 * on stderr), writes one CSV file per scenario to --out DIR, and ends with the
 * goals as PASS/MISS lines computed from this run (goals.c).
 *
 * Exit status: 0 when the run completed (whatever the goals say), 1 when a
 * lock broke mutual exclusion, a try-acquire took a held lock, a waiter hung
 * or a scenario failed; 2 on a usage or setup error.
 */
#include "bench.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

struct bench_cfg g_cfg;

/* The scenarios, in the order they run (enum scenario_id), by the names of
 * --scenarios, of the report's headings and of their CSV files. */
static const struct scenario {
    const char *name;
    void      (*run)(void);
} g_scenarios[SC__COUNT] = {
    [SC_UNCONTENDED] = { "uncontended", scenario_uncontended },
    [SC_TRYBUSY]     = { "trybusy",     scenario_trybusy },
    [SC_CONTENDED]   = { "contended",   scenario_contended },
    [SC_MANYKEYS]    = { "manykeys",    scenario_manykeys },
    [SC_WAKEUP]      = { "wakeup",      scenario_wakeup },
    [SC_TAKEOVER]    = { "takeover",    scenario_takeover },
    [SC_MEMORY]      = { "memory",      scenario_memory },
    [SC_ATTACH]      = { "attach",      scenario_attach },
    [SC_SHARED]      = { "shared",      scenario_shared },
};

/* "uncontended,takeover" -> bits of enum scenario_id, or 0 for an unknown
 * name. memory walks the manykeys table: either selects both. */
static unsigned parse_scenarios(const char *list)
{
    unsigned bits = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        int i = 0;
        while (i < SC__COUNT && strcmp(w, g_scenarios[i].name) != 0)
            i++;
        if (i == SC__COUNT) {
            fprintf(stderr, "shmlease-bench: no scenario named '%s'\n", w);
            return 0;
        }
        bits |= 1u << i;
    }
    if (bits & (1u << SC_MEMORY | 1u << SC_MANYKEYS))
        bits |= 1u << SC_MEMORY | 1u << SC_MANYKEYS;
    return bits;
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

    printf("# shmlease benchmarks%s\n\n", g_cfg.quick ? " (--quick)" : "");
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
"  --scenarios LIST   e.g. uncontended,contended,takeover (default: all of\n"
"                     uncontended, trybusy, contended, manykeys, wakeup,\n"
"                     takeover, memory, attach, shared; memory and manykeys run\n"
"                     together)\n"
"Markdown on stdout, progress on stderr. Exit 0: the run completed; 1: a lock\n"
"misbehaved (exclusion, hang, error); 2: usage or setup error.\n");
}

/* Fills g_cfg from the command line: -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv)
{
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
    g_cfg.out = ".";
    g_cfg.scenarios = (1u << SC__COUNT) - 1;
    int c;
    while ((c = getopt_long(argc, argv, "qo:d:r:ns:h", lo, NULL)) != -1) {
        switch (c) {
        case 'q': g_cfg.quick = 1; break;
        case 'o': g_cfg.out = optarg; break;
        case 'd': g_cfg.dump_bin = optarg; break;
        case 'r': g_cfg.redis_bin = optarg; break;
        case 'n': g_cfg.no_redis = 1; break;
        case 's':
            if ((g_cfg.scenarios = parse_scenarios(optarg)) == 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Sample counts and durations: the full run, or --quick. */
static void set_counts(void)
{
    if (g_cfg.quick) {
        g_cfg.batches = 20;  g_cfg.batch_ms = 1;  g_cfg.warm_ms = 10;
        g_cfg.rounds = 3;    g_cfg.rounds_big = 3;    g_cfg.round_s = 0.15;
        g_nprocs_n = 3;      g_nprocs[1] = 8;         g_nprocs[2] = 32;
        g_cfg.wake_samples = 30;
        g_cfg.takeover_samples = 30;
        g_cfg.big_keys = 100000;
    } else {
        g_cfg.batches = 100; g_cfg.batch_ms = 4;  g_cfg.warm_ms = 50;
        g_cfg.rounds = 5;    g_cfg.rounds_big = 3;    g_cfg.round_s = 0.5;
        g_cfg.wake_samples = 200;
        g_cfg.takeover_samples = 200;
        g_cfg.big_keys = 1u << 20;
    }
}

int main(int argc, char **argv)
{
    int r = parse_args(argc, argv);
    if (r >= 0)
        return r;
    set_counts();
    results_init();
    mkdir(g_cfg.out, 0755);
    setvbuf(stdout, NULL, _IOLBF, 0);

    cleanup_init();
    r = peers_setup();
    if (r < 0) {
        fprintf(stderr, "shmlease-bench: setup failed: %s (%s)\n", strerror(-r), shmlease_errname(r));
        cleanup_run();
        return 2;
    }
    if (g_cfg.no_redis)
        snprintf(g_env.redis_why, sizeof g_env.redis_why, "--no-redis");
    else
        redis_start(g_cfg.redis_bin);

    header();
    for (int i = 0; i < SC__COUNT; i++)
        if (scenario_selected(i))
            g_scenarios[i].run();
    goals();

    redis_stop();
    cleanup_run();
    if (g_failed)
        printf("\nSome measurements FAILED (see ERROR above): a lock misbehaved or a scenario could not run.\n");
    fflush(stdout);
    return g_failed ? 1 : 0;
}
