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
    [COL_COMMAND] = { "COMMAND",  false, "holder's command name; '-' none or dead; '?' unknown" },
    [COL_PID]     = { "PID",      true,  "holder's PID; '-' in a grace period; '*' another PID namespace" },
    [COL_STATE]   = { "STATE",    false, "alive, dead, unknown (cannot tell) or grace" },
    [COL_LEFT]    = { "LEFT",     true,  "time until the deadline, or 'expired'" },
    [COL_EXPIRES] = { "EXPIRES",  true,  "deadline on the table's clock, ms" },
    [COL_WAITERS] = { "WAITERS",  true,  "threads waiting for the key (on each of its rows)" },
    [COL_META]    = { "METADATA", false, "holder's metadata (escaped)" },
    [COL_METALEN] = { "METALEN",  true,  "metadata length in bytes" },
    [COL_METAHEX] = { "METAHEX",  false, "metadata in hex" },
    [COL_PIDNS]   = { "PIDNS",    false, "'same' or 'other' PID namespace than the holder's" },
    [COL_START]   = { "START",    true,  "holder's start time, clock ticks since boot" },
    [COL_HANDLE]  = { "HANDLE",   true,  "registry slot of the holder's handle" },
    [COL_USER]    = { "USER",     false, "holder's user (effective)" },
    [COL_CGROUP]  = { "CGROUP",   false, "holder's control group" },
    [COL_UNIT]    = { "UNIT",     false, "holder's systemd unit (cron.service, session-2.scope)" },
    [COL_UUNIT]   = { "UUNIT",    false, "holder's unit in its user's service manager" },
    [COL_TABLE]   = { "TABLE",    false, "the table's name" },
    [COL_MODE]    = { "MODE",     false, "excl, shared, or shared/N (at most N holders at once)" },
    [COL_HOLDERS] = { "HOLDERS",  true,  "the key's holders in this mode (one row each)" },
    [COL_WAITPIDS] = { "WAITPIDS", false, "PIDs waiting for the key, (N) threads; '-' none" },
};

bool column_is_late(enum col_id c)
{
    return c == COL_MODE || c == COL_HOLDERS || c == COL_WAITPIDS || c == COL_WAITERS;
}

size_t mode_text(const struct dump_row *r, char *buf, size_t size)
{
    if (size < 18)
        return 0;
    /* The common cases without printf: one of these per row. */
    if (r->mode != SHMLEASE_SHARED)
        return (size_t)(stpcpy(buf, "excl") - buf);
    size_t n = (size_t)(stpcpy(buf, "shared") - buf);
    if (r->limit == 0 || r->limit >= SHMLEASE_LIMIT_MAX)
        return n;
    buf[n++] = '/';
    return n + fmt_u64(buf + n, r->limit);
}

size_t waitpids_text(const struct table_view *v, const struct dump_row *r, char *buf,
                     size_t size)
{
    if (size < 8)
        return 0;
    if (dump_remote(v->opts))          /* shmlease_waiters: EOPNOTSUPP on Redis */
        return (size_t)(stpcpy(buf, "n/a") - buf);
    if (r->q_n == 0)
        return (size_t)(stpcpy(buf, "-") - buf);
    size_t len = 0;
    for (uint32_t i = 0; i < r->q_n; i++) {
        const struct dump_waiter *w = &v->queue[r->q_first + i];
        char one[48];
        size_t n = fmt_i64(one, w->pid);
        if (w->other_pidns)
            one[n++] = '*';
        if (w->threads > 1)
            n += (size_t)snprintf(one + n, sizeof(one) - n, "(%u)", (unsigned)w->threads);
        one[n] = '\0';
        /* Room for this one, and for ",..." should the next not fit. */
        if (len + (i > 0) + n + 4 >= size) {
            memcpy(buf + len, ",...", 5);
            return len + 4;
        }
        if (i > 0)
            buf[len++] = ',';
        memcpy(buf + len, one, n + 1);
        len += n;
    }
    return len;
}

/* ------------------------------------------------------------------------ */
/* One table                                                                 */

/* PID cell: '-' in a grace period, '1234*' for a PID of another namespace. */
static size_t format_pid(const shmlease_info *in, char *buf)
{
    if (in->in_grace || in->holder_pid == 0)
        return (size_t)(stpcpy(buf, "-") - buf);
    size_t n = fmt_i64(buf, in->holder_pid);
    if (in->holder_other_pidns) {
        buf[n++] = '*';
        buf[n] = '\0';
    }
    return n;
}

static const char *pidns_text(const shmlease_info *in)
{
    return in->in_grace || in->holder_pid == 0 ? "-"
           : in->holder_other_pidns            ? "other"
                                               : "same";
}

/* Bytes a cell's text may take: escaped key or metadata, 4 per byte; a
 * longer cgroup path is cut. */
#define CELL_SIZE 4096

/* LEFT: tool_format_left's text (a printf per call) remembered for the
 * last values seen: the leases of a table tend to share a few deadlines. */
struct left_memo {
    int64_t ms[64];
    uint8_t len[64];
    char text[64][32];
};

static size_t format_left(int64_t ms, char *buf, size_t size)
{
    static struct left_memo memo;
    static bool used[64];
    if (ms <= 0)
        return (size_t)(stpcpy(buf, "expired") - buf);
    /* Above a minute the text depends only on the whole seconds. */
    int64_t key = ms >= 60 * 1000 ? ms / 1000 * 1000 : ms;
    size_t slot = (size_t)((uint64_t)key / 1000 * 7 + (uint64_t)key % 1000) % 64;
    if (!used[slot] || memo.ms[slot] != key) {
        tool_format_left(key, memo.text[slot], sizeof(memo.text[slot]));
        memo.len[slot] = (uint8_t)strlen(memo.text[slot]);
        memo.ms[slot] = key;
        used[slot] = true;
    }
    if ((size_t)memo.len[slot] + 1 > size)
        return 0;
    memcpy(buf, memo.text[slot], (size_t)memo.len[slot] + 1);
    return memo.len[slot];
}

/* S into BUF of SIZE bytes, cut with "..." if it does not fit; its length. */
static size_t copy_cell(const char *s, char *buf, size_t size)
{
    size_t n = strlen(s);
    if (n < size) {
        memcpy(buf, s, n + 1);
        return n;
    }
    memcpy(buf, s, size - 4);
    memcpy(buf + size - 4, "...", 4);
    return size - 1;
}

/* Writes the text of column c for lease in of table v into buf (CELL_SIZE
 * bytes); returns its length. */
static size_t format_cell(enum col_id c, const shmlease_info *in, const struct table_view *v,
                          const struct dump_row *r, char *buf, size_t size)
{
    size_t mlen = in->metadata_len <= SHMLEASE_METADATA_MAX ? in->metadata_len
                                                            : SHMLEASE_METADATA_MAX;
    switch (c) {
    case COL_KEY:
        return escape_into(in->key, strnlen(in->key, sizeof(in->key)), buf);
    case COL_TOKEN:
        return fmt_u64(buf, in->fencing_token);
    case COL_PID:
        return format_pid(in, buf);
    case COL_STATE:
        return (size_t)(stpcpy(buf, holder_state(in)) - buf);
    case COL_LEFT:
        return format_left(in->remaining_ms, buf, size);
    case COL_EXPIRES:
        return fmt_u64(buf, in->expires_at_ms);
    case COL_WAITERS:
        return fmt_u64(buf, in->waiters);
    case COL_META:
        return escape_into(in->metadata, mlen, buf);
    case COL_METALEN:
        return fmt_u64(buf, in->metadata_len);
    case COL_METAHEX:
        tool_hex(in->metadata, mlen, buf);
        return 2 * mlen;
    case COL_PIDNS:
        return (size_t)(stpcpy(buf, pidns_text(in)) - buf);
    case COL_START:
        return fmt_u64(buf, in->holder_start_time);
    case COL_HANDLE:
        if (dump_remote(v->opts))      /* no registry of handles on Redis */
            return (size_t)(stpcpy(buf, "n/a") - buf);
        return fmt_u64(buf, in->holder_handle);
    case COL_COMMAND:
    case COL_USER:
    case COL_CGROUP:
    case COL_UNIT:
    case COL_UUNIT:
        return copy_cell(proc_cell(c, in), buf, size);
    case COL_MODE:
        return r != NULL ? mode_text(r, buf, size) : 0;
    case COL_HOLDERS:
        return fmt_u64(buf, in->holders);
    case COL_WAITPIDS:
        return r != NULL ? waitpids_text(v, r, buf, size) : 0;
    case COL_TABLE: {
        char esc[4 * SHMLEASE_NAME_MAX + 8];
        size_t n = strnlen(v->name, SHMLEASE_NAME_MAX + 1);
        tool_escape_text(v->name, n, esc);
        return copy_cell(esc, buf, size);
    }
    default:
        buf[0] = '\0';
        return 0;
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

static void print_owner_mode(FILE *f, const struct stat *sb)
{
    struct passwd *pw = getpwuid(sb->st_uid);
    if (pw != NULL)
        fprintf(f, "owner %s", pw->pw_name);
    else
        fprintf(f, "owner %lu", (unsigned long)sb->st_uid);
    fprintf(f, ", mode %04o", (unsigned)(sb->st_mode & 07777));
}

/* The summary of a table on a Redis server: no segment, capacity or
 * handles there. */
static void print_summary_remote(FILE *f, const struct table_view *v)
{
    const shmlease_stats *s = &v->st;
    fprintf(f, "table:     %s\n", v->name);
    fprintf(f, "backend:   redis %s\n", v->opts->bc.shown);
    fprintf(f, "format:    %lu (the layout of the table's keys on the server)\n",
            (unsigned long)s->format_version);
    fprintf(f, "capacity:  n/a (grows as the server's memory allows); %lu held (or in "
               "grace), %lu live\n", (unsigned long)s->held, (unsigned long)s->live_keys);
    fprintf(f, "attached:  n/a (not counted on a Redis server)\n");
}

/* The lines every summary ends with: the fencing counter and the stats. */
static void print_summary_counters(FILE *f, const shmlease_stats *s)
{
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

static void print_summary(FILE *f, const struct table_view *v)
{
    const shmlease_stats *s = &v->st;
    if (dump_remote(v->opts)) {
        print_summary_remote(f, v);
        print_summary_counters(f, s);
        return;
    }
    char size[32];
    tool_format_bytes(s->segment_bytes, size, sizeof(size));
    fprintf(f, "table:     %s  (%s)\n", v->name, v->path);
    fprintf(f, "backend:   local\n");
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
    print_summary_counters(f, s);
}

/* Decimal digits of V. */
static size_t digits(uint64_t v)
{
    size_t n = 1;
    for (; v >= 10000; v /= 10000)
        n += 4;
    return n + (v >= 10) + (v >= 100) + (v >= 1000);
}

size_t cell_len(enum col_id c, const shmlease_info *in, const struct table_view *v)
{
    size_t mlen = in->metadata_len <= SHMLEASE_METADATA_MAX ? in->metadata_len
                                                            : SHMLEASE_METADATA_MAX;
    switch (c) {
    case COL_TOKEN:
        return digits(in->fencing_token);
    case COL_WAITERS:
        return digits(in->waiters);
    case COL_HOLDERS:
        return digits(in->holders);
    case COL_MODE: {
        struct dump_row r = { .mode = (uint8_t)in->mode, .limit = in->limit };
        char buf[32];
        return mode_text(&r, buf, sizeof(buf));
    }
    case COL_PID:
        if (in->in_grace || in->holder_pid == 0)
            return 1;
        return digits((uint64_t)(in->holder_pid < 0 ? -(int64_t)in->holder_pid
                                                    : in->holder_pid)) +
               (in->holder_pid < 0) + (in->holder_other_pidns != 0);
    case COL_KEY:
        return escaped_len(in->key, strnlen(in->key, sizeof(in->key)));
    case COL_META:
        return escaped_len(in->metadata, mlen);
    case COL_COMMAND:
    case COL_USER:
    case COL_CGROUP:
    case COL_UNIT:
    case COL_UUNIT: {
        size_t n = strlen(proc_cell(c, in));
        return n < CELL_SIZE ? n : CELL_SIZE - 1;
    }
    default: {
        char buf[CELL_SIZE];
        return format_cell(c, in, v, NULL, buf, sizeof(buf));
    }
    }
}

size_t late_cell_len(enum col_id c, const struct table_view *v, const struct dump_row *r)
{
    char buf[CELL_SIZE];
    switch (c) {
    case COL_MODE:
        return mode_text(r, buf, sizeof(buf));
    case COL_HOLDERS:
        return digits(r->holders);
    case COL_WAITERS:
        return digits(r->waiters);
    case COL_WAITPIDS:
        return waitpids_text(v, r, buf, sizeof(buf));
    default:
        return 0;
    }
}

/* width[c]: the widest text of column c, its heading included unless
 * --noheadings (the cells' widths were measured as the leases were read). */
static void lease_widths(const struct table_view *v, const struct dump_opts *o, size_t *width)
{
    for (size_t c = 0; c < o->ncols; c++) {
        width[c] = o->noheadings ? 0 : strlen(columns[o->cols[c]].name);
        if (v->cell_width[o->cols[c]] > width[c])
            width[c] = v->cell_width[o->cols[c]];
    }
}

/* Cell text for -r: every space as \x20, so that cells split on one space
 * (the cells are escaped already: a backslash is "\\"). */
static void put_raw_cell(struct outbuf *ob, const char *s, size_t len)
{
    const char *end = s + len, *sp;
    while ((sp = memchr(s, ' ', (size_t)(end - s))) != NULL) {
        ob_put(ob, s, (size_t)(sp - s));
        ob_put(ob, "\\x20", 4);
        s = sp + 1;
    }
    ob_put(ob, s, (size_t)(end - s));
}

/* Cell text padded to WIDTH: on the left for a right-aligned column, on the
 * right for any other but the last (no trailing blanks); in red, padding
 * included, with HL. */
static void put_cell(struct outbuf *ob, const char *s, size_t len, size_t width, bool right,
                     bool last, bool hl)
{
    size_t pad = width > len ? width - len : 0;
    if (hl)
        ob_str(ob, "\033[1;31m");
    if (right)
        ob_spaces(ob, pad);
    ob_put(ob, s, len);
    if (!right && !last)
        ob_spaces(ob, pad);
    if (hl)
        ob_str(ob, "\033[0m");
    ob_str(ob, last ? "\n" : "  ");
}

static void print_lease_headings(struct outbuf *ob, const struct dump_opts *o,
                                 const size_t *width)
{
    size_t nc = o->ncols;
    for (size_t c = 0; c < nc; c++) {
        const struct column *col = &columns[o->cols[c]];
        put_cell(ob, col->name, strlen(col->name), width[c], col->right, c + 1 == nc, false);
    }
}

static bool holder_dead(const shmlease_info *in)
{
    return !in->in_grace && in->holder_pid != 0 && in->holder_alive == 0;
}

/* Room for the cells of one row: every column formatted before any is
 * printed, to leave out trailing empty cells. */
struct row_cells {
    char text[COL__COUNT * 2][CELL_SIZE];
    size_t len[COL__COUNT * 2];
};

/* One row: cells aligned, nothing after the last non-empty cell, the STATE
 * of a dead holder in red on a terminal. */
static void print_lease_row(struct outbuf *ob, const struct table_view *v,
                            const struct dump_opts *o, const shmlease_info *in,
                            const struct dump_row *r, const size_t *width,
                            struct row_cells *rc)
{
    bool is_dead = holder_dead(in);
    for (size_t c = 0; c < o->ncols; c++)
        rc->len[c] = format_cell(o->cols[c], in, v, r, rc->text[c], sizeof(rc->text[c]));
    size_t upto = o->ncols;               /* no trailing blanks after empty cells */
    while (upto > 1 && rc->len[upto - 1] == 0)
        upto--;
    for (size_t c = 0; c < upto; c++) {
        bool hl = o->color && is_dead && o->cols[c] == COL_STATE;
        put_cell(ob, rc->text[c], rc->len[c], width[c], columns[o->cols[c]].right,
                 c + 1 == upto, hl);
    }
}

/* A note for each key reserved by an exclusive acquirer that waits for
 * its shared holders to leave (the first few; then how many more). */
static void print_reserved_notes(FILE *f, const struct table_view *v)
{
    enum { SHOWN = 5 };
    size_t n = 0;
    for (size_t i = 0; i < v->nrows; i++) {
        const struct dump_row *r = view_row_ptr(v, i);
        if (!r->reserved)
            continue;
        if (n++ >= SHOWN)
            continue;
        uint32_t shared = 0;
        for (size_t j = 0; j < v->nrows; j++) {
            const struct dump_row *s = view_row_ptr(v, j);
            shared += s->mode == SHMLEASE_SHARED && s->q_first == r->q_first &&
                      s->klen == r->klen &&
                      memcmp(v->bytes + s->text, v->bytes + r->text, r->klen) == 0;
        }
        char esc[4 * SHMLEASE_KEY_MAX + 8];
        tool_escape_text(v->bytes + r->text, r->klen, esc);
        fprintf(f, "reserved: %s: pid %ld%s (excl) waits for %u shared holder%s to leave.\n",
                esc, (long)r->pid, r->other_pidns ? "*" : "", (unsigned)shared,
                shared == 1 ? "" : "s");
    }
    if (n > SHOWN)
        fprintf(f, "reserved: %zu more keys, each reserved by an exclusive acquirer.\n",
                n - SHOWN);
}

/* The notes under the rows: dead holders, unknown liveness, other PID
 * namespaces, each once if any row has it. */
static void print_lease_notes(FILE *f, const struct table_view *v)
{
    size_t dead = 0, other_ns = 0, unknown = 0;
    for (size_t r = 0; r < v->nrows; r++) {
        const struct dump_row *in = &v->rows[r];
        bool held = !in->in_grace && in->pid != 0;
        dead += held && in->alive == 0;
        unknown += held && in->alive < 0;
        other_ns += held && in->other_pidns;
    }
    if (dead > 0)
        fprintf(f, "dead: %zu lease%s held by an exited process: free for the next "
                   "acquirer.\n", dead, dead == 1 ? "" : "s");
    if (unknown > 0)
        fprintf(f, "unknown: liveness cannot be proven; the TTL alone decides.\n");
    if (other_ns > 0)
        fprintf(f, "*: PID of another PID namespace (liveness from the kernel lock).\n");
    print_reserved_notes(f, v);
}

static void print_leases(FILE *f, const struct table_view *v, const struct dump_opts *o)
{
    size_t width[COL__COUNT * 2];
    struct outbuf *ob = malloc(sizeof(*ob));
    struct row_cells *rc = malloc(sizeof(*rc));
    if (ob == NULL || rc == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(TOOL_EX_OSERR);
    }
    ob->f = f;
    ob->len = 0;
    lease_widths(v, o, width);
    if (!o->noheadings)
        print_lease_headings(ob, o, width);
    shmlease_info in;
    for (size_t r = 0; r < v->nrows; r++) {
        view_row(v, r, &in);
        print_lease_row(ob, v, o, &in, view_row_ptr(v, r), width, rc);
    }
    ob_flush(ob);
    free(rc);
    free(ob);
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

/* -r: the rows of every table, headings once, no summary and no notes. */
void print_tables_raw(FILE *f, const struct table_view *views, size_t n,
                      const struct dump_opts *o)
{
    struct outbuf *ob = malloc(sizeof(*ob));
    char *cell = malloc(CELL_SIZE);
    if (ob == NULL || cell == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(TOOL_EX_OSERR);
    }
    ob->f = f;
    ob->len = 0;
    if (!o->noheadings)
        for (size_t c = 0; c < o->ncols; c++) {
            ob_str(ob, columns[o->cols[c]].name);
            ob_char(ob, c + 1 < o->ncols ? ' ' : '\n');
        }
    shmlease_info in;
    for (size_t i = 0; i < n; i++) {
        const struct table_view *v = &views[i];
        if (v->rc != 0)
            continue;
        for (size_t r = 0; r < v->nrows; r++) {
            view_row(v, r, &in);
            for (size_t c = 0; c < o->ncols; c++) {
                size_t len = format_cell(o->cols[c], &in, v, view_row_ptr(v, r), cell,
                                         CELL_SIZE);
                put_raw_cell(ob, cell, len);
                ob_char(ob, c + 1 < o->ncols ? ' ' : '\n');
            }
        }
    }
    ob_flush(ob);
    free(cell);
    free(ob);
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

/* Prints one --list line: the headings, or the cells of one table; with
 * -r, cells split by one space, unaligned. */
static void print_list_line(FILE *f, const char *const *cells, const size_t *width, bool raw)
{
    struct outbuf ob;
    ob.f = f;
    ob.len = 0;
    for (size_t c = 0; c < LIST_NCOL; c++) {
        bool last = c + 1 == LIST_NCOL;
        size_t len = strlen(cells[c]);
        if (raw) {
            put_raw_cell(&ob, cells[c], len);
            ob_char(&ob, last ? '\n' : ' ');
        } else {
            put_cell(&ob, cells[c], len, last ? 0 : width[c], list_right[c], last, false);
        }
    }
    ob_flush(&ob);
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
        print_list_line(f, list_heads, width, o->raw);
    for (size_t i = 0; i < n; i++) {
        print_list_line(f, (const char *const *)cells[i], width, o->raw);
        for (size_t c = 0; c < LIST_NCOL; c++)
            free(cells[i][c]);
    }
    if (n == 0 && !o->raw)
        fprintf(f, "(no tables in " TOOL_SHM_DIR ")\n");
    free(cells);
}
