/*
 * shmlease-dump, in parts:
 *   shmlease-dump.c  the command line, and one pass over the tables asked for
 *   dump-read.c      reading a table under a fault guard; finding tables in
 *                    /dev/shm; what an error means (message, exit code)
 *   dump-text.c      the text output: summaries, lease rows, --list
 *   dump-json.c      the JSON output
 *   dump-prom.c      the Prometheus (node_exporter textfile) output
 *   dump-proc.c      who a holder is: command, user, cgroup, unit (/proc)
 *   dump-out.c       buffered output and number formatting for all
 * This header holds what they share.
 */
#ifndef SHMLEASE_DUMP_H
#define SHMLEASE_DUMP_H

#include "tool-util.h"

#include <shmlease.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#define PROG "shmlease-dump"

/* Exit codes: keep in step with usage() in shmlease-dump.c and shmlease-dump.1. */
#define DUMP_EXIT_OK          0
#define DUMP_EXIT_NOT_FOUND   1   /* a table does not exist */
#define DUMP_EXIT_UNUSABLE    2   /* corrupt, foreign, truncated, no access, ... */
#define DUMP_EXIT_KEY_FREE    3   /* --key: the key is not held in a table */
#define DUMP_EXIT_USAGE       TOOL_EX_USAGE

/* ------------------------------------------------------------------------ */
/* Columns of the lease rows (-o)                                            */

enum col_id {
    COL_KEY, COL_TOKEN, COL_COMMAND, COL_PID, COL_STATE, COL_LEFT, COL_EXPIRES,
    COL_WAITERS, COL_META, COL_METALEN, COL_METAHEX, COL_PIDNS, COL_START,
    COL_HANDLE, COL_USER, COL_CGROUP, COL_UNIT, COL_UUNIT, COL_TABLE,
    COL_MODE, COL_HOLDERS, COL_WAITPIDS,
    COL__COUNT
};

struct column {
    const char *name;
    bool right;               /* right-aligned (numbers) */
    const char *help;
};

/* Indexed by enum col_id; in dump-text.c. */
extern const struct column columns[COL__COUNT];

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

struct dump_opts {
    bool list;
    bool all;
    bool json;
    bool raw;                  /* -r: one line per lease, cells split by one space */
    bool prometheus;           /* --prometheus: metrics, to stdout or prom_file */
    const char *prom_file;
    bool quiet_errors;         /* --list, --prometheus of every table: errors in
                                  the output only, exit 0 */
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
    struct tool_backend_choice bc;  /* --backend URL, --local, SHMLEASE_BACKEND */
};

/* The tables shown are on a Redis server (o->bc.url), not in /dev/shm. */
static inline bool dump_remote(const struct dump_opts *o)
{
    return o->bc.url != NULL;
}

/* ------------------------------------------------------------------------ */
/* One table as read                                                         */

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
    /* The leases, compact (a shmlease_info is ~360 bytes, mostly unused key
     * and metadata room): fixed fields in rows[], key and metadata bytes in
     * bytes[]; order[i] names a row, sorted by key, then token, once the
     * walk is over. */
    struct dump_row *rows;
    struct sort_item *order;
    size_t nrows, caprows;
    unsigned char *bytes;
    size_t nbytes, capbytes;
    /* Text output: the widest cell of each column asked for (-o), measured
     * as each lease is read, while it is in cache. */
    const struct dump_opts *opts;
    size_t cell_width[COL__COUNT];
    bool key_free;             /* --key and the key is not held */
    /* Counted as the walk meets the leases (all of them, --key or not,
     * for --prometheus): leases by state, and sleeping waiters. */
    uint64_t n_alive, n_dead, n_unknown, n_grace, n_other_pidns, n_waiters;
    /* ... and by mode: exclusive holders, shared holders. */
    uint64_t n_exclusive, n_shared;
    /* The queues: the processes waiting for each key shown, in runs (a
     * key's rows name theirs by q_first, q_n). */
    struct dump_waiter *queue;
    size_t nqueue, capqueue;
    bool key_info_valid;       /* --prometheus --key: key_info is the key's */
    shmlease_info key_info;
};

/* A row to sort: its key's first 16 bytes as two big-endian numbers (zero
 * padded), so that most comparisons never leave the sorted array. */
struct sort_item {
    uint64_t p0, p1;
    uint32_t row;
    uint32_t pad;
};

/* A process waiting for a key (shmlease_waiters), or the exclusive
 * acquirer that has reserved a key and waits for its shared holders to
 * leave (reserved). */
struct dump_waiter {
    uint64_t start_time;
    int32_t  pid;
    uint32_t threads;
    uint32_t handle;
    uint8_t  other_pidns, reserved;
};

/* One lease as read: every field of shmlease_info the dump shows. */
struct dump_row {
    uint64_t token;
    uint64_t expires_at_ms;
    uint64_t start_time;
    int64_t  remaining_ms;
    uint64_t metadata_len;     /* as the library reported it */
    uint64_t text;             /* offset in bytes[]: the key, then the metadata */
    int32_t  pid;
    uint32_t handle;
    uint32_t waiters;
    int32_t  alive;            /* holder_alive */
    uint32_t limit;            /* SHARED: the limit its holders agreed on */
    uint32_t holders;          /* the key's holders in this row's mode */
    uint32_t q_first, q_n;     /* the key's waiters: queue[q_first .. +q_n) */
    uint8_t  in_grace, other_pidns;
    uint8_t  klen, mlen;       /* bytes stored: strnlen(key), min(metadata_len, max) */
    uint8_t  mode;             /* SHMLEASE_EXCLUSIVE or SHMLEASE_SHARED */
    uint8_t  reserved;         /* exclusive, and waits for the key's shared holders */
};

/* Who a holder is, from /proc/PID (dump-proc.c). */
struct proc_text {
    char *raw;                 /* as read, malloc'd; NULL if unknown */
    char *text;                /* escaped as tool_escape_text does */
};

struct proc_desc {
    int32_t pid;
    uint64_t start;            /* the holder's start time this was read for */
    bool found;                /* /proc/PID is the holder, and was read */
    bool have_uid;
    uint32_t uid;              /* effective */
    uint8_t comm_len;
    char comm_raw[16];
    char comm[4 * 16 + 1];     /* escaped */
    char user[64];             /* name, or the uid in decimal */
    struct proc_text cgroup, unit, uunit;
};

/* ---- dump-read.c -------------------------------------------------------- */

/* Catches SIGBUS and SIGSEGV raised while collect() reads a segment. */
void guard_install(void);

/* Reads table NAME into *v as *o asks: with o->key only that key (inspect),
 * with o->list no leases. Never fails: errors land in v->rc. */
void collect(const char *name, const struct dump_opts *o, struct table_view *v);

/* Frees the rows of *v. */
void view_free(struct table_view *v);

/* The I-th lease of *v in display order (by key, then token), as the
 * library reported it; view_row_at: in the order the walk met them. */
void view_row(const struct table_view *v, size_t i, shmlease_info *out);
void view_row_at(const struct table_view *v, size_t row, shmlease_info *out);
/* The I-th row in display order itself (its mode, queue). */
const struct dump_row *view_row_ptr(const struct table_view *v, size_t i);

/* "excl", "shared" or "shared/N" (a counted lease of limit N). */
size_t mode_text(const struct dump_row *r, char *buf, size_t size);
/* The waiting PIDs of R's key: "4711,4712(3),4713*" ('-' none). */
size_t waitpids_text(const struct table_view *v, const struct dump_row *r, char *buf,
                     size_t size);

/* The exit code *v calls for: ok, not found, unusable, key free or usage. */
int view_exit_code(const struct table_view *v);

/* The worse of two exit codes: usage, unusable, not found, key free, ok. */
int worse(int a, int b);

/* Why *v could not be read, one sentence for an operator, without the
 * program name; terse leaves out the error's name and the failed call. */
void describe_error_full(const struct table_view *v, const char *key,
                         bool terse, char *buf, size_t size);
void describe_error(const struct table_view *v, const char *key, char *buf, size_t size);

/* "shmlease-dump: NAME: why" on stderr. */
void report_error(const struct table_view *v, const char *key);

/* "alive", "dead", "unknown" (cannot tell) or "grace" (held by nobody). */
const char *holder_state(const shmlease_info *in);

/* Names of every /dev/shm/shmlease.* entry, sorted; NULL-terminated, malloc'd.
 * NULL with *err set if the directory cannot be read. */
char **scan_tables(size_t *count, int *err);

/* ---- dump-proc.c -------------------------------------------------------- */

/* The holder of IN as /proc shows it, NULL when there is no live holder to
 * show (grace, dead, another PID namespace) or /proc/PID is not it. */
const struct proc_desc *proc_describe(const shmlease_info *in);

/* The text of column C (COMMAND, USER, CGROUP, UNIT, UUNIT) for IN: '-' when
 * nobody holds the key or its holder is dead, '?' when it cannot be read. */
const char *proc_cell(enum col_id c, const shmlease_info *in);

/* Forgets every process read (each --watch pass reads them again). */
void proc_cache_clear(void);

/* ---- dump-out.c --------------------------------------------------------- */

/* Output gathered in memory and handed to stdio in large blocks: the lease
 * rows are many small pieces, and a stdio call per piece cost more than the
 * rest of the dump. Whoever writes to the FILE directly flushes first. */
struct outbuf {
    FILE *f;
    size_t len;
    char buf[1 << 16];
};

void ob_flush(struct outbuf *ob);
void ob_put(struct outbuf *ob, const void *p, size_t n);
void ob_str(struct outbuf *ob, const char *s);
void ob_char(struct outbuf *ob, char c);
void ob_spaces(struct outbuf *ob, size_t n);
void ob_u64(struct outbuf *ob, uint64_t v);
void ob_i64(struct outbuf *ob, int64_t v);
/* P[0..N) as a JSON string, exactly as tool_json_string writes it. */
void ob_json_string(struct outbuf *ob, const void *p, size_t n);

/* P[0..N) escaped exactly as tool_escape_text does, into OUT (4*N+1
 * bytes); its length. escaped_len: that length, nothing written. */
size_t escape_into(const void *p, size_t n, char *out);
size_t escaped_len(const void *p, size_t n);

/* Decimal digits of V into BUF (at least 21 bytes), NUL-terminated; the
 * length. */
size_t fmt_u64(char *buf, uint64_t v);
size_t fmt_i64(char *buf, int64_t v);

/* ---- dump-text.c -------------------------------------------------------- */

/* The length of column c's text for lease in of table v, as the text output
 * prints it. */
size_t cell_len(enum col_id c, const shmlease_info *in, const struct table_view *v);
/* Columns whose cells depend on the key's other rows and its queue: measured
 * once every lease is read (dump-read.c), not as each is met. */
bool column_is_late(enum col_id c);
/* The length of late column C's text for row R. */
size_t late_cell_len(enum col_id c, const struct table_view *v, const struct dump_row *r);

/* Each table of views[0..n) that could be read: summary and lease rows. */
void print_tables_text(FILE *f, const struct table_view *views, size_t n,
                       const struct dump_opts *o);

/* --list: one line per table, unusable ones with their error in STATUS. */
void print_list_text(FILE *f, struct table_view *views, size_t n, const struct dump_opts *o);

/* -r: the lease rows of every table, one line each, cells split by one
 * space; spaces inside a cell escaped as \x20; headings once. */
void print_tables_raw(FILE *f, const struct table_view *views, size_t n,
                      const struct dump_opts *o);

/* ---- dump-json.c -------------------------------------------------------- */

/* The JSON document of one pass: {"tool", "json_version", "tables": [...]}. */
void print_json(FILE *f, const struct table_view *views, size_t n, const struct dump_opts *o);

/* ---- dump-prom.c -------------------------------------------------------- */

/* The metrics of one pass in the Prometheus text format. */
void print_prometheus(FILE *f, const struct table_view *views, size_t n,
                      const struct dump_opts *o);

/* Writes the metrics into PATH atomically: a temporary file in PATH's
 * directory, renamed over PATH. 0, or -1 with a message on stderr. */
int write_prometheus_file(const char *path, const struct table_view *views, size_t n,
                          const struct dump_opts *o);

#endif
