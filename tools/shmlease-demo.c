/*
 * shmlease-demo: the workers of one pre-fork "server" coordinate through one
 * table, with no server process:
 *
 *   - a once-only job ("daily-report"): every worker tries it, exactly one
 *     runs it, and a grace period keeps the others (and late starters) off it;
 *   - per-item jobs with dynamic keys ("file-processing:<id>"): each item is
 *     processed by exactly one worker;
 *   - a worker is SIGKILLed while it holds a lease with a 60 s TTL, once
 *     another worker is asleep waiting for that key; the waiter takes it
 *     over at once (the time is printed), with a greater fencing token;
 *   - the table is printed; a second lease of the killed worker is left in
 *     place so that `shmlease-dump demo` shows a dead holder.
 *
 * Usage: shmlease-demo [TABLE]   (default table: "demo")
 * Exit status 0 when every promise above held, 1 otherwise.
 */
#include "shmlease.h"

#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4
#define ITEMS   24
#define VICTIM  (WORKERS - 1)

struct shared {                      /* what the workers report to the parent */
    atomic_int report_runs;
    atomic_int processed[ITEMS];
    atomic_int processed_by[ITEMS];
    atomic_int victim_ready;
    atomic_int takeover_done;
    atomic_ullong victim_token;
    atomic_ullong takeover_token;
    atomic_llong kill_ns;
    atomic_llong takeover_ns;
};

static struct shared *sh;
static const char *table_name = "demo";

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void msleep(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void say(int id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int id, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (id < 0)
        printf("[server  pid %5d] %s\n", (int)getpid(), buf);
    else
        printf("[worker %d pid %5d] %s\n", id, (int)getpid(), buf);
    fflush(stdout);
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "shmlease-demo: %s: %s\n", what, shmlease_strerror(rc));
    return 1;
}

static void once_only_job(shmlease_table *t, int id)
{
    char meta[64];
    snprintf(meta, sizeof meta, "daily-report by worker %d", id);
    shmlease_acquire_opts o = {.ttl_ms = 10000, .wait_ms = 0, .metadata = meta, .metadata_len = strlen(meta)};
    shmlease_lease l;
    int rc = shmlease_acquire(t, "daily-report", &o, &l);
    if (rc == -EBUSY) {
        say(id, "daily-report: already taken, skipping");
        return;
    }
    if (rc) {
        say(id, "daily-report: %s", shmlease_strerror(rc));
        return;
    }
    say(id, "daily-report: won it (fencing token %llu), running it once",
        (unsigned long long)l.fencing_token);
    atomic_fetch_add(&sh->report_runs, 1);
    msleep(150);
    /* Keep the key held by nobody for 10 minutes: nobody runs it again soon. */
    shmlease_release_after(t, &l, 10 * 60 * 1000);
}

static void item_jobs(shmlease_table *t, int id)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < ITEMS; k++) {
            int i = (k + id * 5) % ITEMS;        /* workers start at different items */
            if (atomic_load(&sh->processed[i]))
                continue;
            char key[64];
            snprintf(key, sizeof key, "file-processing:%d", i);
            shmlease_acquire_opts o = {.ttl_ms = 5000, .wait_ms = 0, .metadata = "batch", .metadata_len = 5};
            shmlease_lease l;
            if (shmlease_acquire(t, key, &o, &l) != 0)
                continue;                         /* someone else has it */
            if (atomic_load(&sh->processed[i]) == 0) {
                atomic_fetch_add(&sh->processed[i], 1);
                atomic_store(&sh->processed_by[i], id);
                msleep(10);
            }
            /* A grace period, as the seeds' gracePeriod: done items stay claimed. */
            shmlease_release_after(t, &l, 5 * 60 * 1000);
        }
    }
}

static int worker(int id)
{
    shmlease_table *t;
    int rc = shmlease_open(table_name, NULL, &t);
    if (rc)
        return die("open", rc);
    once_only_job(t, id);

    if (id == VICTIM) {
        /* Take two keys with a long TTL, then get killed holding them. */
        shmlease_acquire_opts o = {.ttl_ms = 60000, .wait_ms = 0,
                                   .metadata = "rebuilding search index", .metadata_len = 23};
        shmlease_lease idx, cache;
        if ((rc = shmlease_acquire(t, "search-index", &o, &idx)) != 0)
            return die("acquire search-index", rc);
        o.metadata = "warming cache";
        o.metadata_len = 13;
        if ((rc = shmlease_acquire(t, "cache-warmup", &o, &cache)) != 0)
            return die("acquire cache-warmup", rc);
        atomic_store(&sh->victim_token, idx.fencing_token);
        say(id, "holds \"search-index\" (token %llu) and \"cache-warmup\", TTL 60 s",
            (unsigned long long)idx.fencing_token);
        atomic_store(&sh->victim_ready, 1);
        for (;;)
            pause();                              /* the server will kill us */
    }

    if (id == 0) {
        /* Worker 0 needs the search index: it blocks until it gets it. */
        while (!atomic_load(&sh->victim_ready))
            msleep(1);
        say(id, "waiting for \"search-index\" (held by worker %d)", VICTIM);
        shmlease_acquire_opts o = {.ttl_ms = 30000, .wait_ms = SHMLEASE_WAIT_FOREVER,
                                   .metadata = "rebuilding search index", .metadata_len = 23};
        shmlease_lease l;
        if ((rc = shmlease_acquire(t, "search-index", &o, &l)) != 0)
            return die("acquire search-index", rc);
        atomic_store(&sh->takeover_ns, now_ns());
        atomic_store(&sh->takeover_token, l.fencing_token);
        atomic_store(&sh->takeover_done, 1);
        say(id, "took over \"search-index\" (token %llu)", (unsigned long long)l.fencing_token);
        shmlease_release(t, &l);
    }

    item_jobs(t, id);
    shmlease_close(t);
    return 0;
}

static int print_lease(const shmlease_info *i, void *arg)
{
    (void)arg;
    char meta[SHMLEASE_METADATA_MAX + 1];
    size_t n = i->metadata_len;
    for (size_t k = 0; k < n; k++)
        meta[k] = (i->metadata[k] >= 32 && i->metadata[k] < 127) ? (char)i->metadata[k] : '?';
    meta[n] = 0;
    const char *who = i->in_grace ? "grace" : i->holder_alive == 1 ? "alive" : i->holder_alive == 0 ? "DEAD" : "?";
    printf("  %-22s %6llu %7d %-6s %8.1f s  %s\n", i->key, (unsigned long long)i->fencing_token,
           (int)i->holder_pid, who, (double)i->remaining_ms / 1000.0, meta);
    return 0;
}

/* SIGKILLs the victim once it holds "search-index" and worker 0 is asleep
 * on that key (inspection counts it as a waiter): killed any sooner, the
 * takeover would measure how long worker 0 takes to start waiting, not how
 * fast a dead holder's key changes hands. Notes the time for the check.
 * 0, or -1 if the waiter never came. */
static int kill_victim(shmlease_table *t, const pid_t *pids)
{
    while (!atomic_load(&sh->victim_ready))
        msleep(1);
    shmlease_info in;
    long long give_up = now_ns() + 60LL * 1000000000LL;
    for (;;) {
        if (shmlease_inspect(t, "search-index", &in) == 0 && in.waiters >= 1)
            break;
        if (now_ns() > give_up) {
            say(-1, "worker 0 never waited on \"search-index\"");
            kill(pids[VICTIM], SIGKILL);
            return -1;
        }
        msleep(1);
    }
    say(-1, "SIGKILL worker %d (pid %d) while it holds \"search-index\" with %lld s of TTL "
            "left (%u waiter asleep on it)",
        VICTIM, (int)pids[VICTIM], (long long)(in.remaining_ms / 1000), in.waiters);
    atomic_store(&sh->kill_ns, now_ns());
    kill(pids[VICTIM], SIGKILL);
    return 0;
}

/* Waits for every worker; 1 when all but the victim exited with 0. */
static int reap_workers(const pid_t *pids)
{
    int ok = 1;
    for (int i = 0; i < WORKERS; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        if (i != VICTIM && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            ok = 0;
    }
    return ok;
}

/* The takeover of the killed holder's key: its death freed it, not its TTL
 * (which had 50+ s left), and the token grew. The time is measured, not
 * judged: it depends on how busy the machine is. */
static int check_takeover(void)
{
    if (!atomic_load(&sh->takeover_done)) {
        printf("  takeover did not happen: WRONG\n");
        return 0;
    }
    double ms = (double)(atomic_load(&sh->takeover_ns) - atomic_load(&sh->kill_ns)) / 1e6;
    unsigned long long a = atomic_load(&sh->victim_token), b = atomic_load(&sh->takeover_token);
    int by_death = ms < 50000;
    printf("  killed holder's \"search-index\" taken over %.1f ms after SIGKILL (TTL was 60 s): %s\n",
           ms, by_death ? "ok" : "WRONG (the TTL freed it, not the death)");
    printf("  fencing token grew across the takeover: %llu -> %llu: %s\n", a, b, b > a ? "ok" : "WRONG");
    return b > a && by_death;
}

/* Prints what the workers reported against each promise; 1 if all held. */
static int check_promises(void)
{
    int ok = 1;
    printf("\nWhat happened:\n");
    int runs = atomic_load(&sh->report_runs);
    printf("  once-only job \"daily-report\" ran %d time(s)                 %s\n", runs, runs == 1 ? "ok" : "WRONG");
    ok &= runs == 1;
    int once = 1, done = 0;
    for (int i = 0; i < ITEMS; i++) {
        int n = atomic_load(&sh->processed[i]);
        done += n > 0;
        once &= n == 1;
    }
    printf("  per-item jobs: %d of %d items processed, each exactly once: %s\n", done, ITEMS, once ? "ok" : "WRONG");
    ok &= once && done == ITEMS;
    ok &= check_takeover();
    return ok;
}

/* The table's counters and leases, as the workers left them. */
static void print_table(shmlease_table *t)
{
    shmlease_stats s;
    shmlease_stats_get(t, &s);
    printf("\nTable \"%s\": capacity %u, live keys %u, held %u, fencing counter %llu\n", table_name,
           s.capacity, s.live_keys, s.held, (unsigned long long)s.fencing_counter);
    printf("  acquisitions %llu, busy %llu, waits %llu, reclaimed from dead holders %llu\n",
           (unsigned long long)s.acquisitions, (unsigned long long)s.busy,
           (unsigned long long)s.waits, (unsigned long long)s.reclaimed_dead);
    printf("  %-22s %6s %7s %-6s %10s  %s\n", "KEY", "TOKEN", "PID", "HOLDER", "LEFT", "METADATA");
    shmlease_foreach(t, print_lease, NULL);
    printf("\n(\"cache-warmup\" is still held by the killed worker: the next acquirer reclaims it at once.)\n");
}

int main(int argc, char **argv)
{
    if (argc > 1)
        table_name = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 1;
    shmlease_unlink(table_name);                  /* start from a fresh table */
    shmlease_table *t;
    int rc = shmlease_open(table_name, &(shmlease_options){.capacity = 256}, &t);
    if (rc)
        return die("open", rc);
    say(-1, "table \"%s\" created (/dev/shm/shmlease.%s); starting %d workers", table_name, table_name, WORKERS);

    pid_t pids[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(worker(i));
    }
    int ok = kill_victim(t, pids) == 0;
    ok &= reap_workers(pids);
    ok &= check_promises();
    print_table(t);
    shmlease_close(t);
    printf("%s\n", ok ? "demo: all promises held" : "demo: SOMETHING WENT WRONG");
    return ok ? 0 : 1;
}
