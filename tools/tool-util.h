/*
 * Helpers shared by the command-line tools (shmlease, shmlease-dump):
 * argument parsing, byte escaping, table names. Nothing here touches a table.
 */
#ifndef SHMLEASE_TOOL_UTIL_H
#define SHMLEASE_TOOL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* sysexits.h values, spelled out so the tools' documented codes live here. */
#define TOOL_EX_USAGE        64   /* bad command line */
#define TOOL_EX_UNAVAILABLE  69   /* table unusable: corrupt, foreign, no access, full */
#define TOOL_EX_OSERR        71   /* fork, memory, descriptors, unexpected errors */
#define TOOL_EX_TEMPFAIL     75   /* shmlease run: the lease was lost */

#define TOOL_SHM_DIR     "/dev/shm"
#define TOOL_SHM_PREFIX  "shmlease."

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
