/*
 * shmlease-dump, in parts:
 *   shmlease-dump.c  the command line, and one pass over the tables asked for
 *   dump-read.c      reading a table under a fault guard; finding tables in
 *                    /dev/shm; what an error means (message, exit code)
 *   dump-text.c      the text output: summaries, lease rows, --list
 *   dump-json.c      the JSON output
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
    COL_KEY, COL_TOKEN, COL_PID, COL_STATE, COL_LEFT, COL_EXPIRES, COL_WAITERS,
    COL_META, COL_METALEN, COL_METAHEX, COL_PIDNS, COL_START, COL_HANDLE,
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
    shmlease_info *rows;
    size_t nrows, caprows;
    bool key_free;             /* --key and the key is not held */
};

/* ---- dump-read.c -------------------------------------------------------- */

/* Catches SIGBUS and SIGSEGV raised while collect() reads a segment. */
void guard_install(void);

/* Reads table NAME into *v. With key, only that key (inspect); with
 * summary_only, no leases. Never fails: errors land in v->rc. */
void collect(const char *name, const char *key, bool summary_only, struct table_view *v);

/* Frees the rows of *v. */
void view_free(struct table_view *v);

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

/* ---- dump-text.c -------------------------------------------------------- */

/* Each table of views[0..n) that could be read: summary and lease rows. */
void print_tables_text(FILE *f, const struct table_view *views, size_t n,
                       const struct dump_opts *o);

/* --list: one line per table, unusable ones with their error in STATUS. */
void print_list_text(FILE *f, struct table_view *views, size_t n, const struct dump_opts *o);

/* ---- dump-json.c -------------------------------------------------------- */

/* The JSON document of one pass: {"tool", "json_version", "tables": [...]}. */
void print_json(FILE *f, const struct table_view *views, size_t n, const struct dump_opts *o);

#endif
