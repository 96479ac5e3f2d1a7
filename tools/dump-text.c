/*
 * shmlease-dump: the text output. Per table a summary (format, capacity,
 * counters) and one row per lease, in the manner of lslocks(8); with --list,
 * one line per table, in the manner of ipcs(1).
 */
#include "dump.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>

const struct column columns[COL__COUNT] = {
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

/* ------------------------------------------------------------------------ */
/* One table                                                                 */

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

/* The text of one pass: each table that could be read, a blank line between
 * two (errors went to stderr). */
void print_tables_text(FILE *f, const struct table_view *views, size_t n,
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

/* ------------------------------------------------------------------------ */
/* --list: one line per table                                                */

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

void print_list_text(FILE *f, struct table_view *views, size_t n,
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
