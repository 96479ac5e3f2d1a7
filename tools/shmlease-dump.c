/*
 * shmlease-dump: who holds what, and are they alive?
 *
 * Prints the state of shmlease tables: a summary of each table (format,
 * capacity, counters) and one row per held lease, in the manner of lslocks(8)
 * and ipcs(1); or one JSON document.
 *
 * It opens tables with SHMLEASE_OPEN_READONLY|SHMLEASE_OPEN_NOCREATE and uses
 * only the inspection calls (stats_get, foreach, inspect, now_ms), which never
 * take a lock and never write: it works on a table whose structural mutex is
 * held by a dead or stopped process. A segment that is truncated while mapped
 * raises SIGBUS on access; that, or any fault while the library reads a
 * hostile segment, is caught (see guard_*) and reported as an unusable table
 * (exit 2) instead of a crash.
 */
#include "tool-util.h"

#include <shmlease.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "shmlease-dump"

/* Exit codes: keep in step with usage() and shmlease-dump.1. */
#define DUMP_EXIT_OK          0
#define DUMP_EXIT_NOT_FOUND   1   /* a table does not exist */
#define DUMP_EXIT_UNUSABLE    2   /* corrupt, foreign, truncated, no access, ... */
#define DUMP_EXIT_KEY_FREE    3   /* --key: the key is not held in a table */
#define DUMP_EXIT_USAGE       TOOL_EX_USAGE

/* ------------------------------------------------------------------------ */
/* Columns                                                                   */

enum col_id {
    COL_KEY, COL_TOKEN, COL_PID, COL_STATE, COL_LEFT, COL_EXPIRES, COL_WAITERS,
    COL_META, COL_METALEN, COL_METAHEX, COL_PIDNS, COL_START, COL_HANDLE,
    COL__COUNT
};

static const struct column {
    const char *name;
    bool right;               /* right-aligned (numbers) */
    const char *help;
} columns[COL__COUNT] = {
    [COL_KEY]     = { "KEY",      false, "the lease's key (escaped)" },
    [COL_TOKEN]   = { "TOKEN",    true,  "fencing token of the current claim" },
    [COL_PID]     = { "PID",      true,  "holder's PID; '-' in a grace period; '*' another PID namespace" },
    [COL_STATE]   = { "STATE",    false, "alive, dead, unknown (cannot tell) or grace" },
    [COL_LEFT]    = { "LEFT",     true,  "time until the deadline, or 'expired'" },
    [COL_EXPIRES] = { "EXPIRES",  true,  "deadline on the table's clock, ms" },
    [COL_WAITERS] = { "WAITERS",  true,  "processes waiting for the key" },
    [COL_META]    = { "METADATA", false, "holder's metadata (escaped)" },
    [COL_METALEN] = { "METALEN",  true,  "metadata length in bytes" },
    [COL_METAHEX] = { "METAHEX",  false, "metadata in hex" },
    [COL_PIDNS]   = { "PIDNS",    false, "'same' or 'other' PID namespace than the holder's" },
    [COL_START]   = { "START",    true,  "holder's start time, clock ticks since boot" },
    [COL_HANDLE]  = { "HANDLE",   true,  "registry slot of the holder's handle" },
};

static const enum col_id default_cols[] = {
    COL_KEY, COL_TOKEN, COL_PID, COL_STATE, COL_LEFT, COL_WAITERS, COL_META
};

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

struct dump_opts {
    bool list;
    bool all;
    bool json;
    bool noheadings;
    bool nosummary;
    bool watch;
    uint64_t watch_ms;
    const char *key;
    enum col_id cols[COL__COUNT * 2];
    size_t ncols;
    const char **names;
    size_t nnames;
    bool color;                /* stdout is a terminal: highlight dead holders */
};

/* ------------------------------------------------------------------------ */
/* Reading one table                                                         */

struct table_view {
    const char *name;
    char path[sizeof(TOOL_SHM_DIR) + sizeof(TOOL_SHM_PREFIX) + SHMLEASE_NAME_MAX + 8];
    int rc;                    /* 0, or the library's negative errno */
    const char *failed_call;   /* which call returned rc */
    int fault_sig;             /* a signal caught while reading the segment */
    bool not_regular;          /* the path is a FIFO, directory, device...  */
    bool scanned;              /* found in /dev/shm, not named by the user  */
    bool have_stat;
    struct stat sb;
    shmlease_stats st;
    uint64_t now_ms;
    shmlease_info *rows;
    size_t nrows, caprows;
    bool key_free;             /* --key and the key is not held */
};

/*
 * Fault guard. Only armed while the library reads a mapped segment: a SIGBUS
 * (segment truncated by someone after we mapped it) or a SIGSEGV there jumps
 * back to collect(), which reports the table as unusable. Outside that window
 * the signal keeps its default action, so bugs in this program still crash.
 */
static sigjmp_buf guard_env;
static volatile sig_atomic_t guard_armed;

static void guard_handler(int sig)
{
    if (guard_armed) {
        guard_armed = 0;
        siglongjmp(guard_env, sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void guard_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = guard_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
}

static int collect_row(const shmlease_info *info, void *arg)
{
    struct table_view *v = arg;
    if (v->nrows == v->caprows) {
        size_t ncap = v->caprows ? v->caprows * 2 : 16;
        shmlease_info *n = realloc(v->rows, ncap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        v->rows = n;
        v->caprows = ncap;
    }
    v->rows[v->nrows++] = *info;
    return 0;
}

static int cmp_rows(const void *a, const void *b)
{
    const shmlease_info *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c != 0)
        return c;
    return x->fencing_token < y->fencing_token ? -1 : x->fencing_token > y->fencing_token;
}

static void view_free(struct table_view *v)
{
    free(v->rows);
    v->rows = NULL;
    v->nrows = v->caprows = 0;
}

/* Reads an open table into *v: the counters, the clock, and the leases (with
 * key, only that key's; with summary_only, none). *call names the library
 * call under way, for the report if it fails or faults. 0 or an error. */
static int read_table(shmlease_table *t, const char *key, bool summary_only,
                      struct table_view *v, const char *volatile *call)
{
    *call = "shmlease_stats_get";
    int rc = shmlease_stats_get(t, &v->st);
    if (rc != 0)
        return rc;
    v->now_ms = shmlease_now_ms(t);
    if (key != NULL) {
        shmlease_info info;
        *call = "shmlease_inspect";
        rc = shmlease_inspect(t, key, &info);
        if (rc == 0)
            return collect_row(&info, v);
        if (rc == -ENOENT) {
            v->key_free = true;
            return 0;
        }
        return rc;
    }
    if (!summary_only) {
        *call = "shmlease_foreach";
        return shmlease_foreach(t, collect_row, v);
    }
    return 0;
}

/* Reads table NAME into *v. With key, only that key (inspect); with
 * summary_only, no leases. Never fails: errors land in v->rc. */
static void collect(const char *name, const char *key, bool summary_only,
                    struct table_view *v)
{
    memset(v, 0, sizeof(*v));
    v->name = name;
    tool_table_path(name, v->path, sizeof(v->path));
    v->have_stat = stat(v->path, &v->sb) == 0;
    /* Not handed to the library: opening a FIFO blocks until a writer comes. */
    if (v->have_stat && !S_ISREG(v->sb.st_mode)) {
        v->not_regular = true;
        v->rc = -EPROTO;
        v->failed_call = "stat";
        return;
    }

    shmlease_options o;
    memset(&o, 0, sizeof(o));
    o.flags = SHMLEASE_OPEN_READONLY | SHMLEASE_OPEN_NOCREATE;

    /* volatile: read after a siglongjmp back here. */
    shmlease_table *volatile t = NULL;
    const char *volatile call = "shmlease_open";
    int sig = sigsetjmp(guard_env, 1);
    if (sig != 0) {
        /* The library faulted inside the mapping: leak the handle (its state
         * is unknown; closing could fault again) and report. */
        v->fault_sig = sig;
        v->rc = -EPROTO;
        v->failed_call = call;
        view_free(v);
        return;
    }

    guard_armed = 1;
    shmlease_table *tt = NULL;
    int rc = shmlease_open(name, &o, &tt);
    t = tt;
    if (rc == 0)
        rc = read_table(t, key, summary_only, v, &call);
    guard_armed = 0;
    if (t != NULL)
        shmlease_close(t);
    if (rc != 0) {
        v->rc = rc < 0 ? rc : -EIO;
        v->failed_call = call;
        view_free(v);
        return;
    }
    if (v->nrows > 1)
        qsort(v->rows, v->nrows, sizeof(v->rows[0]), cmp_rows);
}

static int view_exit_code(const struct table_view *v)
{
    if (v->rc == 0)
        return v->key_free ? DUMP_EXIT_KEY_FREE : DUMP_EXIT_OK;
    if (v->rc == -ENOENT && v->fault_sig == 0)
        return DUMP_EXIT_NOT_FOUND;
    /* A bad name the user typed is a usage error; one found in /dev/shm
     * (not made by this library) is an unusable table. */
    if ((v->rc == -EINVAL || v->rc == -ENAMETOOLONG) && v->fault_sig == 0 && !v->scanned)
        return DUMP_EXIT_USAGE;
    return DUMP_EXIT_UNUSABLE;
}

/* Worst first: usage, unusable, not found, key free, ok. */
static int exit_rank(int code)
{
    switch (code) {
    case DUMP_EXIT_USAGE:     return 4;
    case DUMP_EXIT_UNUSABLE:  return 3;
    case DUMP_EXIT_NOT_FOUND: return 2;
    case DUMP_EXIT_KEY_FREE:  return 1;
    default:                  return 0;
    }
}

static int worse(int a, int b)
{
    return exit_rank(b) > exit_rank(a) ? b : a;
}

/* One sentence for an operator, without the program name. */
static void describe_error_full(const struct table_view *v, const char *key,
                                bool terse, char *buf, size_t size)
{
    if (v->fault_sig != 0) {
        snprintf(buf, size,
                 "the segment is corrupt or was truncated while being read "
                 "(caught %s in %s)",
                 v->fault_sig == SIGBUS ? "SIGBUS" : "SIGSEGV", v->failed_call);
        return;
    }
    if (v->not_regular) {
        snprintf(buf, size, "not a shmlease table: %s is not a regular file", v->path);
        return;
    }
    const char *hint = "";
    switch (-v->rc) {
    case ENOENT:
        hint = "no such table";
        break;
    case EPROTO:
        hint = "not a usable shmlease table (corrupt, truncated, foreign, made by "
               "another version, or still being initialised)";
        break;
    case EACCES:
        hint = "permission denied (the segment belongs to another user or "
               "may not be mapped by this user)";
        break;
    case EINVAL:
        hint = key != NULL && strcmp(v->failed_call, "shmlease_inspect") == 0
                   ? "invalid key"
                   : "invalid table name (allowed: [A-Za-z0-9._-]{1,200})";
        break;
    case ENAMETOOLONG:
        hint = "key too long";
        break;
    default:
        hint = shmlease_strerror(v->rc);
        break;
    }
    if (terse)
        snprintf(buf, size, "%s", hint);
    else
        snprintf(buf, size, "%s (%s from %s)", hint, shmlease_errname(v->rc),
                 v->failed_call);
}

static void describe_error(const struct table_view *v, const char *key,
                           char *buf, size_t size)
{
    describe_error_full(v, key, false, buf, size);
}

static void report_error(const struct table_view *v, const char *key)
{
    char msg[512];
    describe_error(v, key, msg, sizeof(msg));
    fprintf(stderr, PROG ": %s: %s\n", v->name, msg);
}

/* ------------------------------------------------------------------------ */
/* Text output                                                               */

static const char *holder_state(const shmlease_info *in)
{
    if (in->in_grace || in->holder_pid == 0)
        return "grace";
    switch (in->holder_alive) {
    case 1:  return "alive";
    case 0:  return "dead";
    default: return "unknown";
    }
}

/* PID cell: '-' in a grace period, '1234*' for a PID of another namespace. */
static void format_pid(const shmlease_info *in, char *buf, size_t size)
{
    if (in->in_grace || in->holder_pid == 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%ld%s", (long)in->holder_pid, in->holder_other_pidns ? "*" : "");
}

static const char *pidns_text(const shmlease_info *in)
{
    return in->in_grace || in->holder_pid == 0 ? "-"
           : in->holder_other_pidns            ? "other"
                                               : "same";
}

/* Bytes a cell's text may take: escaped key or metadata, 4 per byte. */
#define CELL_SIZE (4 * (SHMLEASE_KEY_MAX + SHMLEASE_METADATA_MAX) + 64)

/* Writes the text of column c for lease in into buf (CELL_SIZE bytes). */
static void format_cell(enum col_id c, const shmlease_info *in, char *buf, size_t size)
{
    size_t mlen = in->metadata_len <= SHMLEASE_METADATA_MAX ? in->metadata_len
                                                            : SHMLEASE_METADATA_MAX;
    size_t klen = strnlen(in->key, sizeof(in->key));
    switch (c) {
    case COL_KEY:
        tool_escape_text(in->key, klen, buf);
        break;
    case COL_TOKEN:
        snprintf(buf, size, "%llu", (unsigned long long)in->fencing_token);
        break;
    case COL_PID:
        format_pid(in, buf, size);
        break;
    case COL_STATE:
        snprintf(buf, size, "%s", holder_state(in));
        break;
    case COL_LEFT:
        if (in->remaining_ms <= 0)
            snprintf(buf, size, "expired");
        else
            tool_format_left(in->remaining_ms, buf, size);
        break;
    case COL_EXPIRES:
        snprintf(buf, size, "%llu", (unsigned long long)in->expires_at_ms);
        break;
    case COL_WAITERS:
        snprintf(buf, size, "%lu", (unsigned long)in->waiters);
        break;
    case COL_META:
        tool_escape_text(in->metadata, mlen, buf);
        break;
    case COL_METALEN:
        snprintf(buf, size, "%zu", in->metadata_len);
        break;
    case COL_METAHEX:
        tool_hex(in->metadata, mlen, buf);
        break;
    case COL_PIDNS:
        snprintf(buf, size, "%s", pidns_text(in));
        break;
    case COL_START:
        snprintf(buf, size, "%llu", (unsigned long long)in->holder_start_time);
        break;
    case COL_HANDLE:
        snprintf(buf, size, "%lu", (unsigned long)in->holder_handle);
        break;
    default:
        buf[0] = '\0';
        break;
    }
}

/* strdup, or exit with TOOL_EX_OSERR when memory runs out. */
static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(TOOL_EX_OSERR);
    }
    return d;
}

/* The text of one cell; returns a malloc'd string. */
static char *cell_text(enum col_id c, const shmlease_info *in)
{
    char buf[CELL_SIZE];
    format_cell(c, in, buf, sizeof(buf));
    return xstrdup(buf);
}

static void print_owner_mode(FILE *f, const struct stat *sb)
{
    struct passwd *pw = getpwuid(sb->st_uid);
    if (pw != NULL)
        fprintf(f, "owner %s", pw->pw_name);
    else
        fprintf(f, "owner %lu", (unsigned long)sb->st_uid);
    fprintf(f, ", mode %04o", (unsigned)(sb->st_mode & 07777));
}

static void print_summary(FILE *f, const struct table_view *v)
{
    const shmlease_stats *s = &v->st;
    char size[32];
    tool_format_bytes(s->segment_bytes, size, sizeof(size));
    fprintf(f, "table:     %s  (%s)\n", v->name, v->path);
    fprintf(f, "segment:   %s", size);
    if (v->have_stat) {
        fputs(", ", f);
        print_owner_mode(f, &v->sb);
    }
    fputc('\n', f);
    fprintf(f, "format:    %lu\n", (unsigned long)s->format_version);
    fprintf(f, "capacity:  %lu keys; %lu held (or in grace), %lu live\n",
            (unsigned long)s->capacity, (unsigned long)s->held,
            (unsigned long)s->live_keys);
    fprintf(f, "attached:  %lu handle%s\n", (unsigned long)s->attached,
            s->attached == 1 ? "" : "s");
    fprintf(f, "fencing:   %llu (last token handed out)\n",
            (unsigned long long)s->fencing_counter);
    fprintf(f,
            "stats:     acquisitions %llu, contended %llu, waits %llu, timeouts %llu,\n"
            "           busy %llu, expirations %llu, reclaimed_dead %llu, renewals %llu,\n"
            "           lost %llu, broken %llu, recoveries %llu\n",
            (unsigned long long)s->acquisitions, (unsigned long long)s->contended,
            (unsigned long long)s->waits, (unsigned long long)s->timeouts,
            (unsigned long long)s->busy, (unsigned long long)s->expirations,
            (unsigned long long)s->reclaimed_dead, (unsigned long long)s->renewals,
            (unsigned long long)s->lost,
            (unsigned long long)s->broken, (unsigned long long)s->recoveries);
}

/* The cells of the lease rows, row after row, malloc'd; width[c] becomes the
 * widest text of column c, its heading included unless --noheadings. */
static char **lease_cells(const struct table_view *v, const struct dump_opts *o,
                          size_t *width)
{
    size_t nc = o->ncols, nr = v->nrows;
    char **cells = calloc(nr * nc + 1, sizeof(char *));
    if (cells == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(TOOL_EX_OSERR);
    }
    for (size_t c = 0; c < nc; c++)
        width[c] = o->noheadings ? 0 : strlen(columns[o->cols[c]].name);
    for (size_t r = 0; r < nr; r++)
        for (size_t c = 0; c < nc; c++) {
            char *s = cell_text(o->cols[c], &v->rows[r]);
            cells[r * nc + c] = s;
            if (strlen(s) > width[c])
                width[c] = strlen(s);
        }
    return cells;
}

static void print_lease_headings(FILE *f, const struct dump_opts *o, const size_t *width)
{
    size_t nc = o->ncols;
    for (size_t c = 0; c < nc; c++) {
        const struct column *col = &columns[o->cols[c]];
        bool last = c + 1 == nc;
        if (col->right)
            fprintf(f, "%*s", (int)width[c], col->name);
        else
            fprintf(f, "%-*s", last ? 0 : (int)width[c], col->name);
        fputs(last ? "\n" : "  ", f);
    }
}

static bool holder_dead(const shmlease_info *in)
{
    return !in->in_grace && in->holder_pid != 0 && in->holder_alive == 0;
}

/* One row: cells aligned, nothing after the last non-empty cell, the STATE
 * of a dead holder in red on a terminal. */
static void print_lease_row(FILE *f, const struct dump_opts *o, char **cells,
                            const size_t *width, bool is_dead)
{
    size_t upto = o->ncols;               /* no trailing blanks after empty cells */
    while (upto > 1 && cells[upto - 1][0] == '\0')
        upto--;
    for (size_t c = 0; c < upto; c++) {
        bool last = c + 1 == upto;
        bool hl = o->color && is_dead && o->cols[c] == COL_STATE;
        if (hl)
            fputs("\033[1;31m", f);
        if (columns[o->cols[c]].right)
            fprintf(f, "%*s", (int)width[c], cells[c]);
        else
            fprintf(f, "%-*s", last ? 0 : (int)width[c], cells[c]);
        if (hl)
            fputs("\033[0m", f);
        fputs(last ? "\n" : "  ", f);
    }
}

/* The notes under the rows: dead holders, unknown liveness, other PID
 * namespaces, each once if any row has it. */
static void print_lease_notes(FILE *f, const struct table_view *v)
{
    size_t dead = 0, other_ns = 0, unknown = 0;
    for (size_t r = 0; r < v->nrows; r++) {
        const shmlease_info *in = &v->rows[r];
        dead += holder_dead(in);
        unknown += !in->in_grace && in->holder_pid != 0 && in->holder_alive < 0;
        other_ns += !in->in_grace && in->holder_pid != 0 && in->holder_other_pidns;
    }
    if (dead > 0)
        fprintf(f, "dead: %zu lease%s held by an exited process: free for the next "
                   "acquirer.\n", dead, dead == 1 ? "" : "s");
    if (unknown > 0)
        fprintf(f, "unknown: liveness cannot be proven; the TTL alone decides.\n");
    if (other_ns > 0)
        fprintf(f, "*: PID of another PID namespace (liveness from the kernel lock).\n");
}

static void print_leases(FILE *f, const struct table_view *v, const struct dump_opts *o)
{
    size_t nc = o->ncols, nr = v->nrows;
    size_t width[COL__COUNT * 2];
    char **cells = lease_cells(v, o, width);
    if (!o->noheadings)
        print_lease_headings(f, o, width);
    for (size_t r = 0; r < nr; r++)
        print_lease_row(f, o, &cells[r * nc], width, holder_dead(&v->rows[r]));
    for (size_t i = 0; i < nr * nc; i++)
        free(cells[i]);
    free(cells);
    print_lease_notes(f, v);
}

static void print_table_text(FILE *f, const struct table_view *v,
                             const struct dump_opts *o)
{
    if (!o->nosummary) {
        print_summary(f, v);
        fputc('\n', f);
    }
    if (o->key != NULL && v->key_free) {
        char esc[4 * SHMLEASE_KEY_MAX + 8];
        tool_escape_text(o->key, strnlen(o->key, SHMLEASE_KEY_MAX + 1), esc);
        fprintf(f, "%s: not held\n", esc);
        return;
    }
    if (v->nrows == 0 && o->key == NULL) {
        fputs("(no leases held)\n", f);
        return;
    }
    print_leases(f, v, o);
}

/* ------------------------------------------------------------------------ */
/* JSON output                                                               */

static void json_key(FILE *f, const char *k, bool *first)
{
    if (!*first)
        fputc(',', f);
    *first = false;
    fprintf(f, "\"%s\":", k);
}

static void json_u64(FILE *f, const char *k, uint64_t v, bool *first)
{
    json_key(f, k, first);
    fprintf(f, "%llu", (unsigned long long)v);
}

static void json_i64(FILE *f, const char *k, int64_t v, bool *first)
{
    json_key(f, k, first);
    fprintf(f, "%lld", (long long)v);
}

static void json_bool(FILE *f, const char *k, bool v, bool *first)
{
    json_key(f, k, first);
    fputs(v ? "true" : "false", f);
}

static void json_str(FILE *f, const char *k, const char *v, bool *first)
{
    json_key(f, k, first);
    tool_json_string(f, v, strlen(v));
}

static void json_lease(FILE *f, const shmlease_info *in)
{
    size_t mlen = in->metadata_len <= SHMLEASE_METADATA_MAX ? in->metadata_len
                                                            : SHMLEASE_METADATA_MAX;
    size_t klen = strnlen(in->key, sizeof(in->key));
    bool grace = in->in_grace || in->holder_pid == 0;
    char hex[2 * SHMLEASE_METADATA_MAX + 1];
    char b64[4 * ((SHMLEASE_METADATA_MAX + 2) / 3) + 1];
    bool first = true;

    fputc('{', f);
    json_key(f, "key", &first);
    tool_json_string(f, in->key, klen);
    tool_hex(in->key, klen, hex);
    json_str(f, "key_hex", hex, &first);
    json_u64(f, "fencing_token", in->fencing_token, &first);
    json_key(f, "holder_pid", &first);
    if (grace)
        fputs("null", f);
    else
        fprintf(f, "%ld", (long)in->holder_pid);
    json_str(f, "state", holder_state(in), &first);
    json_key(f, "holder_alive", &first);
    fputs(grace || in->holder_alive < 0 ? "null"
          : in->holder_alive > 0         ? "true"
                                         : "false", f);
    json_bool(f, "holder_other_pidns", in->holder_other_pidns != 0, &first);
    json_u64(f, "holder_start_time", in->holder_start_time, &first);
    json_u64(f, "holder_handle", in->holder_handle, &first);
    json_bool(f, "in_grace", in->in_grace != 0, &first);
    json_i64(f, "remaining_ms", in->remaining_ms, &first);
    json_bool(f, "expired", in->remaining_ms <= 0, &first);
    json_u64(f, "expires_at_ms", in->expires_at_ms, &first);
    json_u64(f, "waiters", in->waiters, &first);
    json_key(f, "metadata", &first);
    tool_json_string(f, in->metadata, mlen);
    json_u64(f, "metadata_len", in->metadata_len, &first);
    tool_hex(in->metadata, mlen, hex);
    json_str(f, "metadata_hex", hex, &first);
    tool_base64(in->metadata, mlen, b64);
    json_str(f, "metadata_base64", b64, &first);
    fputc('}', f);
}

/* The members of a table that could not be read. */
static void json_table_error(FILE *f, const struct table_view *v, const struct dump_opts *o,
                             bool *first)
{
    char msg[512];
    describe_error(v, o->key, msg, sizeof(msg));
    json_str(f, "status", "error", first);
    json_str(f, "error", shmlease_errname(v->rc), first);
    json_i64(f, "errno", -v->rc, first);
    json_str(f, "message", msg, first);
    json_i64(f, "exit_code", view_exit_code(v), first);
}

/* The members of a table that was read: its summary, "stats" as an object. */
static void json_table_summary(FILE *f, const struct table_view *v, bool *first)
{
    const shmlease_stats *s = &v->st;
    char epoch[24];
    snprintf(epoch, sizeof(epoch), "%016llx", (unsigned long long)s->table_epoch);
    json_str(f, "status", "ok", first);
    json_u64(f, "format_version", s->format_version, first);
    json_u64(f, "capacity", s->capacity, first);
    json_u64(f, "held", s->held, first);
    json_u64(f, "live_keys", s->live_keys, first);
    json_u64(f, "attached", s->attached, first);
    json_u64(f, "fencing_counter", s->fencing_counter, first);
    json_u64(f, "segment_bytes", s->segment_bytes, first);
    json_u64(f, "created_at_ms", s->created_at_ms, first);
    json_u64(f, "now_ms", v->now_ms, first);
    json_str(f, "table_epoch", epoch, first);

    json_key(f, "stats", first);
    bool sf = true;
    fputc('{', f);
    json_u64(f, "acquisitions", s->acquisitions, &sf);
    json_u64(f, "contended", s->contended, &sf);
    json_u64(f, "waits", s->waits, &sf);
    json_u64(f, "timeouts", s->timeouts, &sf);
    json_u64(f, "busy", s->busy, &sf);
    json_u64(f, "expirations", s->expirations, &sf);
    json_u64(f, "reclaimed_dead", s->reclaimed_dead, &sf);
    json_u64(f, "renewals", s->renewals, &sf);
    json_u64(f, "lost", s->lost, &sf);
    json_u64(f, "broken", s->broken, &sf);
    json_u64(f, "recoveries", s->recoveries, &sf);
    fputc('}', f);
}

/* "leases": [...], after "key_query" and "key_held" with --key. */
static void json_table_leases(FILE *f, const struct table_view *v, const struct dump_opts *o,
                              bool *first)
{
    if (o->key != NULL) {
        json_key(f, "key_query", first);
        tool_json_string(f, o->key, strlen(o->key));
        json_bool(f, "key_held", !v->key_free, first);
    }
    json_key(f, "leases", first);
    fputc('[', f);
    for (size_t r = 0; r < v->nrows; r++) {
        if (r > 0)
            fputc(',', f);
        json_lease(f, &v->rows[r]);
    }
    fputc(']', f);
}

static void json_table(FILE *f, const struct table_view *v, const struct dump_opts *o,
                       bool with_leases)
{
    bool first = true;
    fputc('{', f);
    json_str(f, "name", v->name, &first);
    json_str(f, "path", v->path, &first);
    if (v->have_stat) {
        json_u64(f, "owner_uid", v->sb.st_uid, &first);
        char mode[8];
        snprintf(mode, sizeof(mode), "%04o", (unsigned)(v->sb.st_mode & 07777));
        json_str(f, "mode", mode, &first);
        json_u64(f, "file_bytes", (uint64_t)v->sb.st_size, &first);
    }
    if (v->rc != 0) {
        json_table_error(f, v, o, &first);
    } else {
        json_table_summary(f, v, &first);
        if (with_leases)
            json_table_leases(f, v, o, &first);
    }
    fputc('}', f);
}

/* ------------------------------------------------------------------------ */
/* Discovering tables                                                        */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names of every /dev/shm/shmlease.* entry, sorted; NULL-terminated, malloc'd. */
static char **scan_tables(size_t *count, int *err)
{
    *count = 0;
    *err = 0;
    DIR *d = opendir(TOOL_SHM_DIR);
    if (d == NULL) {
        *err = errno;
        return NULL;
    }
    size_t n = 0, cap = 16;
    char **names = malloc(cap * sizeof(char *));
    struct dirent *de;
    while (names != NULL && (de = readdir(d)) != NULL) {
        size_t pl = strlen(TOOL_SHM_PREFIX);
        if (strncmp(de->d_name, TOOL_SHM_PREFIX, pl) != 0 || de->d_name[pl] == '\0')
            continue;
        if (n + 1 >= cap) {
            char **nn = realloc(names, cap * 2 * sizeof(char *));
            if (nn == NULL) {
                free(names);
                names = NULL;
                break;
            }
            names = nn;
            cap *= 2;
        }
        names[n] = strdup(de->d_name + pl);
        if (names[n] != NULL)
            n++;
    }
    closedir(d);
    if (names == NULL) {
        *err = ENOMEM;
        return NULL;
    }
    qsort(names, n, sizeof(char *), cmp_str);
    names[n] = NULL;
    *count = n;
    return names;
}

/* ------------------------------------------------------------------------ */
/* One pass                                                                  */

/* --list: one row per table, these columns. */
static const char *const list_heads[] = { "NAME", "FORMAT", "CAPACITY", "HELD", "LIVE",
                                          "ATTACHED", "FENCING", "SIZE", "OWNER",
                                          "MODE", "STATUS" };
enum { LIST_NCOL = sizeof(list_heads) / sizeof(list_heads[0]) };
static const bool list_right[LIST_NCOL] = { false, true, true, true, true,
                                            true,  true, true, false, false, false };

/* The cells of one --list row: '-' for what is not known of the table. */
static void list_row(const struct table_view *v, char buf[LIST_NCOL][1024])
{
    char esc[4 * SHMLEASE_NAME_MAX + 8];
    tool_escape_text(v->name, strlen(v->name), esc);
    snprintf(buf[0], sizeof(buf[0]), "%s", esc);
    if (v->rc == 0) {
        snprintf(buf[1], sizeof(buf[1]), "%lu", (unsigned long)v->st.format_version);
        snprintf(buf[2], sizeof(buf[2]), "%lu", (unsigned long)v->st.capacity);
        snprintf(buf[3], sizeof(buf[3]), "%lu", (unsigned long)v->st.held);
        snprintf(buf[4], sizeof(buf[4]), "%lu", (unsigned long)v->st.live_keys);
        snprintf(buf[5], sizeof(buf[5]), "%lu", (unsigned long)v->st.attached);
        snprintf(buf[6], sizeof(buf[6]), "%llu", (unsigned long long)v->st.fencing_counter);
        snprintf(buf[10], sizeof(buf[10]), "ok");
    } else {
        for (int c = 1; c <= 6; c++)
            snprintf(buf[c], sizeof(buf[c]), "-");
        char msg[512];
        describe_error_full(v, NULL, true, msg, sizeof(msg));
        snprintf(buf[10], sizeof(buf[10]), "%s: %s", shmlease_errname(v->rc), msg);
    }
    if (v->have_stat) {
        tool_format_bytes((uint64_t)v->sb.st_size, buf[7], sizeof(buf[7]));
        struct passwd *pw = getpwuid(v->sb.st_uid);
        if (pw != NULL)
            snprintf(buf[8], sizeof(buf[8]), "%s", pw->pw_name);
        else
            snprintf(buf[8], sizeof(buf[8]), "%lu", (unsigned long)v->sb.st_uid);
        snprintf(buf[9], sizeof(buf[9]), "%04o", (unsigned)(v->sb.st_mode & 07777));
    } else {
        for (int c = 7; c <= 9; c++)
            snprintf(buf[c], sizeof(buf[c]), "-");
    }
}

/* Prints one --list line: the headings, or the cells of one table. */
static void print_list_line(FILE *f, const char *const *cells, const size_t *width)
{
    for (size_t c = 0; c < LIST_NCOL; c++) {
        bool last = c + 1 == LIST_NCOL;
        fprintf(f, list_right[c] ? "%*s" : "%-*s", last ? 0 : (int)width[c], cells[c]);
        fputs(last ? "\n" : "  ", f);
    }
}

static void print_list_text(FILE *f, struct table_view *views, size_t n,
                            const struct dump_opts *o)
{
    size_t width[LIST_NCOL];
    char *(*cells)[LIST_NCOL] = calloc(n + 1, sizeof(*cells));
    if (cells == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(TOOL_EX_OSERR);
    }
    for (size_t c = 0; c < LIST_NCOL; c++)
        width[c] = o->noheadings ? 0 : strlen(list_heads[c]);
    for (size_t i = 0; i < n; i++) {
        char buf[LIST_NCOL][1024];
        list_row(&views[i], buf);
        for (size_t c = 0; c < LIST_NCOL; c++) {
            cells[i][c] = xstrdup(buf[c]);
            if (strlen(buf[c]) > width[c])
                width[c] = strlen(buf[c]);
        }
    }
    if (!o->noheadings)
        print_list_line(f, list_heads, width);
    for (size_t i = 0; i < n; i++) {
        print_list_line(f, (const char *const *)cells[i], width);
        for (size_t c = 0; c < LIST_NCOL; c++)
            free(cells[i][c]);
    }
    if (n == 0)
        fprintf(f, "(no tables in " TOOL_SHM_DIR ")\n");
    free(cells);
}

/* Reads each table of names[0..n) into views[]; returns how many views to
 * show and, in *code, the worst exit code. Tables found by the scan
 * (scanned) that are gone by the time they are opened are left out. */
static size_t read_views(const char *const *names, size_t n, bool scanned,
                         const struct dump_opts *o, struct table_view *views, int *code)
{
    size_t shown = 0;
    *code = DUMP_EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        struct table_view *v = &views[shown];
        collect(names[i], o->key, o->list, v);
        v->scanned = scanned;
        /* A table unlinked between the scan and the open is simply gone. */
        if (scanned && v->rc == -ENOENT && v->fault_sig == 0)
            continue;
        shown++;
        if (v->rc != 0 && !o->list)
            report_error(v, o->key);
        /* --list reports unusable tables in its STATUS column and still
         * succeeds: a user's --list must not fail on others' tables. */
        if (!o->list)
            *code = worse(*code, view_exit_code(v));
    }
    return shown;
}

/* The JSON document of one pass: {"tool", "json_version", "tables": [...]}. */
static void print_json(FILE *f, const struct table_view *views, size_t n,
                       const struct dump_opts *o)
{
    bool first = true;
    fputc('{', f);
    json_str(f, "tool", PROG, &first);
    json_u64(f, "json_version", 1, &first);
    json_key(f, "tables", &first);
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            fputc(',', f);
        json_table(f, &views[i], o, !o->list);
    }
    fputs("]}\n", f);
}

/* The text of one pass: each table that could be read, a blank line between
 * two (errors went to stderr). */
static void print_tables_text(FILE *f, const struct table_view *views, size_t n,
                              const struct dump_opts *o)
{
    bool printed = false;
    for (size_t i = 0; i < n; i++) {
        if (views[i].rc != 0)
            continue;
        if (printed)
            fputc('\n', f);
        print_table_text(f, &views[i], o);
        printed = true;
    }
    if (n == 0 && o->all)
        fprintf(f, "(no tables in " TOOL_SHM_DIR ")\n");
}

static void free_names(char **names)
{
    if (names == NULL)
        return;
    for (size_t i = 0; names[i] != NULL; i++)
        free(names[i]);
    free(names);
}

/* Reads and prints every table asked for once; returns the exit code. */
static int dump_once(FILE *f, const struct dump_opts *o)
{
    const char **names = o->names;
    size_t n = o->nnames;
    char **scanned = NULL;
    if (o->list || o->all) {
        int err;
        scanned = scan_tables(&n, &err);
        if (scanned == NULL) {
            fprintf(stderr, PROG ": cannot read " TOOL_SHM_DIR ": %s\n", strerror(err));
            return DUMP_EXIT_UNUSABLE;
        }
        names = (const char **)scanned;
    }

    struct table_view *views = calloc(n + 1, sizeof(*views));
    if (views == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(TOOL_EX_OSERR);
    }
    int code;
    size_t shown = read_views(names, n, scanned != NULL, o, views, &code);
    if (o->json)
        print_json(f, views, shown, o);
    else if (o->list)
        print_list_text(f, views, shown, o);
    else
        print_tables_text(f, views, shown, o);

    for (size_t i = 0; i < shown; i++)
        view_free(&views[i]);
    free(views);
    free_names(scanned);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " [options] NAME...\n"
"       " PROG " --list [--json]\n"
"       " PROG " --all [options]\n"
"\n"
"Shows who holds which lease of the shmlease tables NAME (/dev/shm/shmlease.NAME),\n"
"whether the holders are alive, and each table's counters. Read-only: it never\n"
"takes a lock and never writes a table. With no NAME, same as --list.\n"
"\n"
"Options:\n"
"  -l, --list            one line per table found in " TOOL_SHM_DIR "\n"
"  -a, --all             full dump of every table found in " TOOL_SHM_DIR "\n"
"  -k, --key KEY         show only the lease of KEY\n"
"  -j, --json            print one JSON document (with --watch: one per line)\n"
"  -w, --watch SECONDS   redraw every SECONDS (fractions allowed) until interrupted\n"
"  -o, --output COLS     lease columns, comma-separated; '+COLS' adds to the default\n"
"  -n, --noheadings      no column headings\n"
"  -s, --no-summary      no table summary, lease rows only\n"
"      --list-columns    describe the columns and exit\n"
"  -h, --help            this help\n"
"  -V, --version         print the version\n"
"\n"
"Columns (default KEY,TOKEN,PID,STATE,LEFT,WAITERS,METADATA):\n"
"  KEY TOKEN PID STATE LEFT EXPIRES WAITERS METADATA METALEN METAHEX PIDNS START HANDLE\n"
"STATE is alive, dead (the holder exited: the next acquirer takes the lease at\n"
"once), unknown (liveness cannot be proven: the TTL decides) or grace (released\n"
"with a grace period, held by nobody; PID '-'). PID '1234*': a PID of another PID\n"
"namespace. Keys and metadata are escaped (\\\\, \\n, \\t, \\xHH).\n"
"\n"
"Exit status:\n"
"  0   success\n"
"  1   a table does not exist\n"
"  2   a table is unusable: corrupt, truncated, foreign format, permission denied\n"
"  3   --key: the key is not held (in some table)\n"
"  64  usage error (bad option, invalid table name or key)\n"
"With several tables the worst applies (64, 2, 1, 3, 0 in that order). --list\n"
"exits 0 and shows unusable tables in its STATUS column.\n");
}

static void list_columns(void)
{
    for (int c = 0; c < COL__COUNT; c++)
        printf("%-9s %s\n", columns[c].name, columns[c].help);
}

static int parse_columns(const char *spec, struct dump_opts *o)
{
    size_t n = 0;
    const char *p = spec;
    if (*p == '+') {
        for (size_t i = 0; i < sizeof(default_cols) / sizeof(default_cols[0]); i++)
            o->cols[n++] = default_cols[i];
        p++;
    }
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int c = 0; c < COL__COUNT; c++)
            if (strlen(columns[c].name) == len && strncasecmp(columns[c].name, p, len) == 0)
                found = c;
        if (found < 0 && len == 4 && strncasecmp(p, "META", 4) == 0)
            found = COL_META;
        if (found < 0) {
            fprintf(stderr, PROG ": unknown column '%.*s' (see --list-columns)\n",
                    (int)len, p);
            return -1;
        }
        if (n >= sizeof(o->cols) / sizeof(o->cols[0])) {
            fprintf(stderr, PROG ": too many columns\n");
            return -1;
        }
        o->cols[n++] = (enum col_id)found;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        fprintf(stderr, PROG ": no columns in '%s'\n", spec);
        return -1;
    }
    o->ncols = n;
    return 0;
}

static int watch_loop(struct dump_opts *o, int argc, char **argv)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    /* Blocked and collected with sigtimedwait: no handler, no lost wake-up. */
    sigprocmask(SIG_BLOCK, &set, NULL);
    bool tty = isatty(STDOUT_FILENO);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);

    for (;;) {
        if (!o->json) {
            if (tty)
                fputs("\033[H\033[2J", stdout);
            time_t now = time(NULL);
            char when[64];
            struct tm tmv;
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tmv));
            printf("Every %.3gs:", (double)o->watch_ms / 1000.0);
            for (int i = 0; i < argc; i++)
                printf(" %s", argv[i]);
            printf("    %s: %s\n\n", host, when);
        }
        dump_once(stdout, o);
        if (!o->json && !tty)
            putchar('\n');
        fflush(stdout);

        struct timespec ts = { .tv_sec = (time_t)(o->watch_ms / 1000),
                               .tv_nsec = (long)(o->watch_ms % 1000) * 1000000L };
        int sig;
        do
            sig = sigtimedwait(&set, NULL, &ts);
        while (sig < 0 && errno == EINTR);
        if (sig > 0)
            return DUMP_EXIT_OK;
    }
}

enum { OPT_LIST_COLUMNS = 0x100 };

/* Applies one option (c as getopt_long returned it, with optarg) to *o.
 * Returns -1 to go on, or the exit code to leave with. */
static int apply_option(int c, struct dump_opts *o)
{
    switch (c) {
    case 'l':
        o->list = true;
        break;
    case 'a':
        o->all = true;
        break;
    case 'k':
        o->key = optarg;
        break;
    case 'j':
        o->json = true;
        break;
    case 'w':
        if (tool_parse_duration_ms(optarg, &o->watch_ms) != 0 || o->watch_ms == 0) {
            fprintf(stderr, PROG ": --watch: invalid interval '%s'\n", optarg);
            return DUMP_EXIT_USAGE;
        }
        o->watch = true;
        break;
    case 'o':
        if (parse_columns(optarg, o) != 0)
            return DUMP_EXIT_USAGE;
        break;
    case 'n':
        o->noheadings = true;
        break;
    case 's':
        o->nosummary = true;
        break;
    case OPT_LIST_COLUMNS:
        list_columns();
        return DUMP_EXIT_OK;
    case 'h':
        usage(stdout);
        return DUMP_EXIT_OK;
    case 'V':
        printf(PROG " (shmlease) %d.%d.%d\n", SHMLEASE_VERSION_MAJOR,
               SHMLEASE_VERSION_MINOR, SHMLEASE_VERSION_PATCH);
        return DUMP_EXIT_OK;
    default:
        fprintf(stderr, "Try '" PROG " --help'.\n");
        return DUMP_EXIT_USAGE;
    }
    return -1;
}

/* Options and table names into *o. Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, struct dump_opts *o)
{
    static const struct option longopts[] = {
        { "list",         no_argument,       NULL, 'l' },
        { "all",          no_argument,       NULL, 'a' },
        { "key",          required_argument, NULL, 'k' },
        { "json",         no_argument,       NULL, 'j' },
        { "watch",        required_argument, NULL, 'w' },
        { "output",       required_argument, NULL, 'o' },
        { "noheadings",   no_argument,       NULL, 'n' },
        { "no-summary",   no_argument,       NULL, 's' },
        { "list-columns", no_argument,       NULL, OPT_LIST_COLUMNS },
        { "help",         no_argument,       NULL, 'h' },
        { "version",      no_argument,       NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < sizeof(default_cols) / sizeof(default_cols[0]); i++)
        o->cols[o->ncols++] = default_cols[i];

    int c;
    while ((c = getopt_long(argc, argv, "lak:jw:o:nshV", longopts, NULL)) != -1) {
        int code = apply_option(c, o);
        if (code >= 0)
            return code;
    }
    o->nnames = (size_t)(argc - optind);
    o->names = (const char **)(argv + optind);
    for (size_t i = 0; i < o->nnames; i++)
        o->names[i] = tool_table_name(o->names[i]);
    return -1;
}

/* Options that exclude each other, or need one another; no NAME and no
 * --all means --list. Returns -1 to go on, or the exit code. */
static int check_args(struct dump_opts *o)
{
    if (o->list && o->all) {
        fprintf(stderr, PROG ": --list and --all exclude each other\n");
        return DUMP_EXIT_USAGE;
    }
    if ((o->list || o->all) && o->nnames > 0) {
        fprintf(stderr, PROG ": --%s takes no table names\n", o->list ? "list" : "all");
        return DUMP_EXIT_USAGE;
    }
    if (o->list && o->key != NULL) {
        fprintf(stderr, PROG ": --list and --key exclude each other\n");
        return DUMP_EXIT_USAGE;
    }
    if (o->nnames == 0 && !o->all) {
        if (o->key != NULL) {
            fprintf(stderr, PROG ": --key needs a table NAME\n");
            return DUMP_EXIT_USAGE;
        }
        o->list = true;
    }
    if (o->key != NULL && (o->key[0] == '\0' || strlen(o->key) > SHMLEASE_KEY_MAX)) {
        fprintf(stderr, PROG ": --key: a key is 1 to %d bytes\n", SHMLEASE_KEY_MAX);
        return DUMP_EXIT_USAGE;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct dump_opts o;
    int code = parse_args(argc, argv, &o);
    if (code < 0)
        code = check_args(&o);
    if (code >= 0)
        return code;
    o.color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;

    guard_install();
    if (o.watch)
        return watch_loop(&o, argc, argv);
    code = dump_once(stdout, &o);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROG ": write error: %s\n", strerror(errno));
        return worse(code, DUMP_EXIT_UNUSABLE);
    }
    return code;
}
