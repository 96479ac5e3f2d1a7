/*
 * shmlease-dump --prometheus: the tables' counters and gauges in the
 * Prometheus text format, for node_exporter's textfile collector (or any
 * scraper of that format). Every metric is named shmlease_* and labelled
 * with its table; per-key series only for the key of --key, so that the
 * number of series stays bounded whatever the tables hold.
 *
 * Written to a file, the output replaces it atomically: a temporary file in
 * the same directory (named with a leading dot and without the .prom
 * suffix, so the collector never reads it half-written), then rename(2).
 */
#include "dump.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A label value: '\\', '"' and newline escaped as the format asks. The
 * values passed in are already escaped by tool_escape_text (no newline,
 * ASCII only), so a key reads as in the text output. */
static void label_value(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n') {
            fputs("\\n", f);
            continue;
        }
        fputc(*s, f);
    }
}

static void table_label(FILE *f, const struct table_view *v)
{
    char esc[4 * SHMLEASE_NAME_MAX + 8];
    tool_escape_text(v->name, strnlen(v->name, SHMLEASE_NAME_MAX + 1), esc);
    fputs("table=\"", f);
    label_value(f, esc);
    fputc('"', f);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample of every readable table, read by GET from its view; none of
 * a table on a Redis server when LOCAL_ONLY (it has no such thing). */
static void per_table(FILE *f, const struct table_view *views, size_t n, const char *name,
                      const char *type, const char *help,
                      uint64_t (*get)(const struct table_view *), bool local_only)
{
    family(f, name, type, help);
    for (size_t i = 0; i < n; i++) {
        if (views[i].rc != 0 || (local_only && dump_remote(views[i].opts)))
            continue;
        fprintf(f, "%s{", name);
        table_label(f, &views[i]);
        fprintf(f, "} %llu\n", (unsigned long long)get(&views[i]));
    }
}

#define GETTER(fn, expr) \
    static uint64_t fn(const struct table_view *v) { return (uint64_t)(expr); }
GETTER(g_capacity, v->st.capacity)
GETTER(g_live, v->st.live_keys)
GETTER(g_held, v->st.held)
GETTER(g_attached, v->st.attached)
GETTER(g_bytes, v->st.segment_bytes)
GETTER(g_fencing, v->st.fencing_counter)
GETTER(g_waiters, v->n_waiters)
GETTER(g_other_ns, v->n_other_pidns)
GETTER(c_acq, v->st.acquisitions)
GETTER(c_contended, v->st.contended)
GETTER(c_waits, v->st.waits)
GETTER(c_timeouts, v->st.timeouts)
GETTER(c_busy, v->st.busy)
GETTER(c_expirations, v->st.expirations)
GETTER(c_reclaimed, v->st.reclaimed_dead)
GETTER(c_renewals, v->st.renewals)
GETTER(c_lost, v->st.lost)
GETTER(c_broken, v->st.broken)
GETTER(c_recoveries, v->st.recoveries)

static const struct {
    const char *name, *type, *help;
    uint64_t (*get)(const struct table_view *);
    bool local_only;           /* a table on a Redis server has none */
} metrics[] = {
    { "shmlease_capacity_keys", "gauge", "Live keys the table can hold.", g_capacity, true },
    { "shmlease_live_keys", "gauge", "Keys in the table: held, in grace, or free but not yet retired.", g_live },
    { "shmlease_held_leases", "gauge", "Leases held or in a grace period, unexpired.", g_held },
    { "shmlease_waiters", "gauge", "Threads of live processes sleeping on a held key.", g_waiters },
    { "shmlease_other_pidns_leases", "gauge", "Leases held by a process of another PID namespace.", g_other_ns },
    { "shmlease_attached_handles", "gauge", "Handles attached to the table by live processes.", g_attached, true },
    { "shmlease_segment_bytes", "gauge", "Size of the table's shared-memory segment.", g_bytes, true },
    { "shmlease_last_fencing_token", "gauge", "The last fencing token the table handed out.", g_fencing },
    { "shmlease_acquisitions_total", "counter", "Successful acquires.", c_acq },
    { "shmlease_contended_total", "counter", "Acquires that found the key held.", c_contended },
    { "shmlease_waits_total", "counter", "Acquires that slept at least once.", c_waits },
    { "shmlease_timeouts_total", "counter", "Acquires that ended with ETIMEDOUT.", c_timeouts },
    { "shmlease_busy_total", "counter", "Acquires that ended with EBUSY.", c_busy },
    { "shmlease_expirations_total", "counter", "Acquires that took over an expired lease.", c_expirations },
    { "shmlease_reclaimed_dead_total", "counter", "Acquires that took over a dead holder's lease.", c_reclaimed },
    { "shmlease_renewals_total", "counter", "Successful renewals.", c_renewals },
    { "shmlease_lost_total", "counter", "Renew, release or check calls that found their lease lost.", c_lost },
    { "shmlease_broken_total", "counter", "Leases ended by an operator (shmlease break).", c_broken },
    { "shmlease_recoveries_total", "counter", "Structural changes repaired after a crash.", c_recoveries },
};

/* shmlease_leases{state=...}: the leases by their holder's state. */
static void leases_by_state(FILE *f, const struct table_view *views, size_t n)
{
    family(f, "shmlease_leases", "gauge",
           "Unexpired leases by holder state: alive, dead (exited: free for the next "
           "acquirer), unknown (cannot tell), grace (released with a grace period).");
    for (size_t i = 0; i < n; i++) {
        const struct table_view *v = &views[i];
        if (v->rc != 0)
            continue;
        const uint64_t count[4] = { v->n_alive, v->n_dead, v->n_unknown, v->n_grace };
        static const char *const state[4] = { "alive", "dead", "unknown", "grace" };
        for (int s = 0; s < 4; s++) {
            fputs("shmlease_leases{", f);
            table_label(f, v);
            fprintf(f, ",state=\"%s\"} %llu\n", state[s], (unsigned long long)count[s]);
        }
    }
}

/* shmlease_holders{mode=...}: the leases by mode. */
static void holders_by_mode(FILE *f, const struct table_view *views, size_t n)
{
    family(f, "shmlease_holders", "gauge",
           "Unexpired leases by mode: exclusive (one per key; grace periods included) and "
           "shared (one per holder of a key held in shared mode).");
    for (size_t i = 0; i < n; i++) {
        const struct table_view *v = &views[i];
        if (v->rc != 0)
            continue;
        const uint64_t count[2] = { v->n_exclusive, v->n_shared };
        static const char *const mode[2] = { "exclusive", "shared" };
        for (int m = 0; m < 2; m++) {
            fputs("shmlease_holders{", f);
            table_label(f, v);
            fprintf(f, ",mode=\"%s\"} %llu\n", mode[m], (unsigned long long)count[m]);
        }
    }
}

static void age_seconds(FILE *f, const struct table_view *views, size_t n)
{
    family(f, "shmlease_age_seconds", "gauge",
           "Time since the table was created (counters start at zero then).");
    for (size_t i = 0; i < n; i++) {
        const struct table_view *v = &views[i];
        if (v->rc != 0 || dump_remote(v->opts))   /* no creation time on Redis */
            continue;
        uint64_t age = v->now_ms > v->st.created_at_ms ? v->now_ms - v->st.created_at_ms : 0;
        fputs("shmlease_age_seconds{", f);
        table_label(f, v);
        fprintf(f, "} %llu.%03u\n", (unsigned long long)(age / 1000), (unsigned)(age % 1000));
    }
}

static void key_labels(FILE *f, const struct table_view *v, const char *key)
{
    char esc[4 * SHMLEASE_KEY_MAX + 8];
    tool_escape_text(key, strnlen(key, SHMLEASE_KEY_MAX), esc);
    table_label(f, v);
    fputs(",key=\"", f);
    label_value(f, esc);
    fputc('"', f);
}

/* --key: the key's own series in every readable table. */
static void per_key(FILE *f, const struct table_view *views, size_t n, const char *key)
{
    family(f, "shmlease_lease_held", "gauge",
           "1 if the key is held or in a grace period (unexpired), else 0.");
    for (size_t i = 0; i < n; i++)
        if (views[i].rc == 0) {
            fputs("shmlease_lease_held{", f);
            key_labels(f, &views[i], key);
            fprintf(f, "} %d\n", views[i].key_info_valid ? 1 : 0);
        }
    family(f, "shmlease_lease_state", "gauge",
           "1 for the holder state of the key's lease (alive, dead, unknown, grace), "
           "0 for the others.");
    for (size_t i = 0; i < n; i++) {
        if (views[i].rc != 0 || !views[i].key_info_valid)
            continue;
        const char *now = holder_state(&views[i].key_info);
        static const char *const state[4] = { "alive", "dead", "unknown", "grace" };
        for (int s = 0; s < 4; s++) {
            fputs("shmlease_lease_state{", f);
            key_labels(f, &views[i], key);
            fprintf(f, ",state=\"%s\"} %d\n", state[s], strcmp(now, state[s]) == 0);
        }
    }
    family(f, "shmlease_lease_remaining_seconds", "gauge",
           "Time until the key's lease (or grace period) ends; negative once expired.");
    for (size_t i = 0; i < n; i++) {
        if (views[i].rc != 0 || !views[i].key_info_valid)
            continue;
        int64_t ms = views[i].key_info.remaining_ms;
        uint64_t a = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
        fputs("shmlease_lease_remaining_seconds{", f);
        key_labels(f, &views[i], key);
        fprintf(f, "} %s%llu.%03u\n", ms < 0 ? "-" : "", (unsigned long long)(a / 1000),
                (unsigned)(a % 1000));
    }
    family(f, "shmlease_lease_waiters", "gauge", "Threads sleeping on the key.");
    for (size_t i = 0; i < n; i++) {
        if (views[i].rc != 0 || !views[i].key_info_valid)
            continue;
        fputs("shmlease_lease_waiters{", f);
        key_labels(f, &views[i], key);
        fprintf(f, "} %lu\n", (unsigned long)views[i].key_info.waiters);
    }
    family(f, "shmlease_lease_holders", "gauge",
           "The key's holders in its mode (exclusive: 1; shared: how many), 0 for the other mode.");
    for (size_t i = 0; i < n; i++) {
        if (views[i].rc != 0 || !views[i].key_info_valid)
            continue;
        const shmlease_info *in = &views[i].key_info;
        static const char *const mode[2] = { "exclusive", "shared" };
        for (uint32_t m = 0; m < 2; m++) {
            fputs("shmlease_lease_holders{", f);
            key_labels(f, &views[i], key);
            fprintf(f, ",mode=\"%s\"} %lu\n", mode[m],
                    (unsigned long)(in->mode == m ? in->holders : 0));
        }
    }
    family(f, "shmlease_lease_fencing_token", "gauge",
           "Fencing token of the key's current claim.");
    for (size_t i = 0; i < n; i++) {
        if (views[i].rc != 0 || !views[i].key_info_valid)
            continue;
        fputs("shmlease_lease_fencing_token{", f);
        key_labels(f, &views[i], key);
        fprintf(f, "} %llu\n", (unsigned long long)views[i].key_info.fencing_token);
    }
}

void print_prometheus(FILE *f, const struct table_view *views, size_t n,
                      const struct dump_opts *o)
{
    family(f, "shmlease_up", "gauge",
           "1 if the table could be read, 0 if not (shmlease-dump NAME says why).");
    for (size_t i = 0; i < n; i++) {
        fputs("shmlease_up{", f);
        table_label(f, &views[i]);
        fprintf(f, "} %d\n", views[i].rc == 0);
    }
    family(f, "shmlease_backend_info", "gauge",
           "Where the table lives: backend=\"local\" (this host's /dev/shm) or the Redis "
           "server's URL (password masked). Always 1.");
    for (size_t i = 0; i < n; i++) {
        fputs("shmlease_backend_info{", f);
        table_label(f, &views[i]);
        fputs(",backend=\"", f);
        label_value(f, views[i].opts->bc.shown);
        fputs("\"} 1\n", f);
    }
    for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
        per_table(f, views, n, metrics[m].name, metrics[m].type, metrics[m].help,
                  metrics[m].get, metrics[m].local_only);
        if (m == 2) {
            leases_by_state(f, views, n);
            holders_by_mode(f, views, n);
        }
    }
    age_seconds(f, views, n);
    if (o->key != NULL)
        per_key(f, views, n, o->key);
}

int write_prometheus_file(const char *path, const struct table_view *views, size_t n,
                          const struct dump_opts *o)
{
    char *d = strdup(path), *b = strdup(path);
    if (d == NULL || b == NULL) {
        free(d);
        free(b);
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    const char *dir = dirname(d), *base = basename(b);
    size_t tlen = strlen(dir) + strlen(base) + 16;
    char *tmp = malloc(tlen);
    if (tmp == NULL) {
        free(d);
        free(b);
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    snprintf(tmp, tlen, "%s/.%s.XXXXXX", dir, base);
    free(d);
    free(b);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, PROG ": --prometheus: cannot create a temporary file beside %s (%s): %s\n",
                path, tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    /* mkstemp makes it 0600; the collector may run as another user. */
    mode_t um = umask(0);
    umask(um);
    int err = fchmod(fd, 0666 & ~um) != 0 ? errno : 0;
    FILE *f = err == 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        if (err == 0)
            err = errno;
        close(fd);
    } else {
        print_prometheus(f, views, n, o);
        if (fflush(f) != 0 || ferror(f))
            err = errno ? errno : EIO;
        if (err == 0 && fsync(fileno(f)) != 0)
            err = errno;
        if (fclose(f) != 0 && err == 0)
            err = errno;
    }
    if (err == 0 && rename(tmp, path) != 0)
        err = errno;
    if (err != 0) {
        fprintf(stderr, PROG ": --prometheus: cannot write %s: %s\n", path, strerror(err));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}
