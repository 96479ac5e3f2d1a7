/*
 * Scenario "attach": what a short-lived process (a cron job, a CGI or PHP
 * request, a CLI) pays to use a table once per run: shmlease_open +
 * shmlease_close of an existing table, and the same around one
 * acquire+release, beside open+flock+close of a lock file, the way such a
 * process takes a flock(2) lock. Writes attach.csv.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct attach_ctx {
    char table[64];
    char lockfile[96];
};

static int op_open_close(void *c)
{
    struct attach_ctx *x = c;
    shmlease_table *t;
    int rc = shmlease_open(x->table, NULL, &t);
    if (rc == 0)
        shmlease_close(t);
    return rc;
}

static int op_open_lease_close(void *c)
{
    struct attach_ctx *x = c;
    shmlease_table *t;
    int rc = shmlease_open(x->table, NULL, &t);
    if (rc != 0)
        return rc;
    shmlease_acquire_opts o = {.ttl_ms = 60000};
    shmlease_lease l;
    rc = shmlease_acquire(t, "daily-report", &o, &l);
    if (rc == 0)
        rc = shmlease_release(t, &l);
    shmlease_close(t);
    return rc;
}

static int op_open_flock_close(void *c)
{
    struct attach_ctx *x = c;
    int fd = open(x->lockfile, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = flock(fd, LOCK_EX) == 0 ? 0 : -errno;
    close(fd);                         /* drops the lock */
    return rc;
}

static const struct attach_row {
    const char *label, *call;
    op_fn op;
} g_rows[] = {
    { "shmlease", "shmlease_open + shmlease_close", op_open_close },
    { "shmlease+lease", "open + acquire + release + close", op_open_lease_close },
    { "flock", "open + flock(LOCK_EX) + close", op_open_flock_close },
};
enum { NROWS = sizeof g_rows / sizeof g_rows[0] };

void scenario_attach(void)
{
    printf("\n## `attach`: one use of a table by a short-lived process\n\n");
    printf("One process opens an existing table (a default one: %u keys), optionally takes "
           "and releases one lease, and closes it, again and again (each open registers "
           "anew, so registry slots are reused past the 4095th); beside it, open + flock + "
           "close of a lock file. Median and p99 over %d batches of back-to-back runs.\n\n",
           SHMLEASE_DEFAULT_CAPACITY, g_cfg.batches);
    printf("| peer | calls | median | p99 | vs flock |\n|---|---|---:|---:|---:|\n");
    FILE *csv = csv_open("attach.csv", BATCH_CSV_HEADER);
    struct attach_ctx x;
    snprintf(x.table, sizeof x.table, "bench-attach-%d", (int)getpid());
    snprintf(x.lockfile, sizeof x.lockfile, "/dev/shm/bench-attach-%d.lock", (int)getpid());
    shmlease_table *keep;
    if (shmlease_open(x.table, NULL, &keep) != 0) {
        printf("ERROR: cannot create the table\n");
        g_failed = 1;
        return;
    }
    struct batch_res res[NROWS];
    for (size_t i = 0; i < NROWS; i++) {
        progress("[attach] %s", g_rows[i].label);
        measure_batches(g_rows[i].op, &x, &res[i]);
        if (res[i].err) {
            printf("ERROR: %s: %s\n", g_rows[i].label, peer_errname(res[i].err));
            g_failed = 1;
        }
    }
    double flock_med = res[NROWS - 1].s.median;
    if (!res[0].err && !res[NROWS - 1].err) {
        g_res.attach_med = res[0].s.median;
        g_res.attach_flock_med = flock_med;
    }
    for (size_t i = 0; i < NROWS; i++) {
        printf("| %s | %s | %s | %s | %s |\n", g_rows[i].label, g_rows[i].call, T(res[i].s.median),
               T(res[i].s.p99), X(res[i].s.median / flock_med));
        csv_batch_row(csv, g_rows[i].label, g_rows[i].call, &res[i]);
    }
    if (csv)
        fclose(csv);
    shmlease_close(keep);
    shmlease_unlink(x.table);
    unlink(x.lockfile);
}
