/*
 * Helpers shared by the command-line tools (shmlease, shmlease-dump):
 * argument parsing, byte escaping, table names, and what to tell a user
 * about a table that could not be used. Nothing here opens a table through
 * the library: the table helpers only stat its files, and read the first
 * bytes of one, to explain an error.
 */
#ifndef SHMLEASE_TOOL_UTIL_H
#define SHMLEASE_TOOL_UTIL_H

#include <shmlease.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* sysexits.h values, spelled out so the tools' documented codes live here. */
#define TOOL_EX_USAGE        64   /* bad command line */
#define TOOL_EX_UNAVAILABLE  69   /* table unusable: corrupt, foreign, no access, full */
#define TOOL_EX_OSERR        71   /* fork, memory, descriptors, unexpected errors */
#define TOOL_EX_TEMPFAIL     75   /* shmlease run: the lease was lost */

#define TOOL_SHM_DIR     "/dev/shm"
#define TOOL_SHM_PREFIX  "shmlease."
#define TOOL_LK_PREFIX   "shmlease-lk."   /* a table's lock file */
#define TOOL_PATH_MAX    (sizeof(TOOL_SHM_DIR) + sizeof(TOOL_LK_PREFIX) + 200 + 8)

/*
 * Parses a duration: a decimal number of seconds ("30", "0.25") with an
 * optional unit suffix "ms", "s", "m", "h" ("500ms", "10m"). Rejects
 * negatives, empty strings, trailing junk and values above ~292 million years.
 * Returns 0 and *out_ms (rounded up to whole ms for non-zero inputs), or -1.
 */
int tool_parse_duration_ms(const char *s, uint64_t *out_ms);

/* Parses an unsigned decimal integer <= max. 0 or -1. */
int tool_parse_uint(const char *s, unsigned long long max, unsigned long long *out);

/* Accepts NAME or a path "/dev/shm/shmlease.NAME"; returns NAME (a suffix of arg). */
const char *tool_table_name(const char *arg);

/* Writes "/dev/shm/shmlease.NAME" into buf. */
void tool_table_path(const char *name, char *buf, size_t size);
/* Writes "/dev/shm/shmlease-lk.NAME" (the table's lock file) into buf. */
void tool_lock_path(const char *name, char *buf, size_t size);

/*
 * The caller's default table: "user-UID" (its effective uid), so that the
 * users of one host never share a table by accident. Created on first use.
 */
#define TOOL_DEFAULT_TABLE_PREFIX "user-"
void tool_default_table(char *buf, size_t size);

/* Is this process in group GID (effective or supplementary)? */
bool tool_in_group(gid_t gid);
/* GROUP as a group name or a number: 0 and *gid, or -1 (no such group). */
int tool_group_id(const char *group, gid_t *gid);
/* "alice" (or "uid 1234" when the uid has no name); "ops" / "gid 1234". */
void tool_user_name(uid_t uid, char *buf, size_t size);
void tool_group_name(gid_t gid, char *buf, size_t size);

/*
 * Where a tool's tables live. "--backend URL" names a Redis server (a
 * shmlease_options.backend URL); without it the environment variable
 * SHMLEASE_BACKEND gives the default (the tools read it; the library never
 * does); "--local" forces the local tables of this host whatever the
 * variable says. An empty SHMLEASE_BACKEND counts as unset.
 */
#define TOOL_BACKEND_ENV "SHMLEASE_BACKEND"
struct tool_backend_choice {
    const char *given;                       /* --backend URL */
    bool local;                              /* --local */
    const char *url;                         /* once resolved: NULL for local */
    bool from_env;                           /* url came from SHMLEASE_BACKEND */
    char shown[512];                         /* url with any password masked */
};

/* --backend ARG (PROG and the command for messages): 0, or -1 after a
 * message (an empty URL, or with --local). */
int tool_backend_option(struct tool_backend_choice *b, const char *prog, const char *arg);
/* --local: 0, or -1 after a message (with --backend). */
int tool_local_option(struct tool_backend_choice *b, const char *prog);
/* Resolves b->url (and b->shown) once the options are read. */
void tool_backend_resolve(struct tool_backend_choice *b);

/* URL as messages and outputs show it: a password in it replaced by "***". */
void tool_url_shown(const char *url, char *buf, size_t size);

/* Is NAME a valid table name ([A-Za-z0-9._-]{1,200}, not "." or "..")? */
bool tool_valid_table_name(const char *name);

/* Errors of a Redis backend that say the server could not be reached or
 * did not answer: the lease may still be held (call again before its
 * deadline). */
bool tool_connection_error(int rc);

/* The sentence for an error of a table on a Redis backend (URL shown), or
 * NULL when the library's text says it: connection refused, bad URL, ...
 * RC is the library's negative errno. */
const char *tool_backend_error_text(int rc);

/* A table as an error message speaks of it. */
/*
 * Which table a command uses. "-t NAME" names one, which must exist unless
 * --create is given (a typo is an error, never a new table); without it the
 * command uses the caller's own default table, "user-UID", made on first
 * use, so that the users of one host never meet in a table by accident.
 * Another user's table is used only with --share.
 */
struct table_choice {
    const char *name;                        /* -t NAME, or the default's name */
    bool is_default;
    bool share;                              /* --share */
    bool create;                             /* --create */
    char default_name[SHMLEASE_NAME_MAX + 1];
    struct tool_backend_choice bc;           /* --backend, --local */
};

/* run, acquire: the lease's mode as the options asked for it. */
struct lease_mode {
    bool shared;                             /* -s, or --limit (the last of -s/-x wins) */
    bool exclusive_given;                    /* -x, -e or --exclusive was given */
    uint32_t limit;                          /* --limit N (1..SHMLEASE_LIMIT_MAX), 0 none */
};

struct tool_table_ref {
    const char *name;
    bool is_default;       /* the caller's default table (no name was given) */
    bool share;            /* --share was given */
    bool may_create;       /* --create was possible here ("shmlease run") */
    bool reading;          /* the tool only reads it (shmlease-dump) */
    bool removing;         /* shmlease unlink */
    const char *backend;   /* a Redis server's URL as shown (password masked);
                              NULL: the local tables */
};

/*
 * Why table REF could not be opened, created or removed, the library having
 * said RC: one sentence for a user, without the program's name, naming the
 * table's owner, mode and group and the reason (not in its group, another
 * user's table without --share, an empty file that is no table, ...), with
 * what to do when there is something to do. Reads the files' status, and
 * the bytes of a segment that is not a table. Returns false (BUF empty)
 * when it knows nothing better than the library's text for RC.
 */
bool tool_explain_table_error(const struct tool_table_ref *ref, int rc, char *buf, size_t size);

/*
 * Escapes bytes for a terminal: printable ASCII as is, backslash as "\\",
 * \n \r \t, every other byte as \xHH. out must hold 4*n+1 bytes.
 */
void tool_escape_text(const void *p, size_t n, char *out);

/* Writes p[0..n) to f as a JSON string: every byte outside 0x20..0x7e, and
 * '"' and '\\', escaped (\u00XX, \", \\). Each byte maps to one code point. */
void tool_json_string(FILE *f, const void *p, size_t n);

/* Lower-case hex of p[0..n); out holds 2*n+1. */
void tool_hex(const void *p, size_t n, char *out);

/* Standard base64 with padding; out holds 4*((n+2)/3)+1. */
void tool_base64(const void *p, size_t n, char *out);

/* "12.3s", "9m59s", "2h05m", "3d04h" for a positive ms count. */
void tool_format_left(int64_t ms, char *buf, size_t size);

/* "4.0KiB", "1.1MiB" ... */
void tool_format_bytes(uint64_t bytes, char *buf, size_t size);

#endif
