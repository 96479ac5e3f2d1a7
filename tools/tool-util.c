#include "tool-util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int tool_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    if (s == NULL || *s == '\0')
        return -1;
    /* strtod accepts "inf", "nan", hex and leading blanks: allow digits and
     * one dot only, then a unit. */
    const char *p = s;
    size_t digits = 0, dots = 0;
    while (isdigit((unsigned char)*p) || *p == '.') {
        if (*p == '.')
            dots++;
        else
            digits++;
        p++;
    }
    if (digits == 0 || dots > 1)
        return -1;
    double scale;
    if (*p == '\0' || strcmp(p, "s") == 0)
        scale = 1000.0;
    else if (strcmp(p, "ms") == 0)
        scale = 1.0;
    else if (strcmp(p, "m") == 0)
        scale = 60.0 * 1000.0;
    else if (strcmp(p, "h") == 0)
        scale = 3600.0 * 1000.0;
    else
        return -1;

    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end != p || v < 0)
        return -1;
    double ms = v * scale;
    if (ms > 9.2e18)
        return -1;
    uint64_t r = (uint64_t)ms;
    if ((double)r < ms)
        r++;                      /* 0.0001 s is 1 ms, not 0 */
    *out_ms = r;
    return 0;
}

int tool_parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

const char *tool_table_name(const char *arg)
{
    static const char path_prefix[] = TOOL_SHM_DIR "/" TOOL_SHM_PREFIX;
    if (strncmp(arg, path_prefix, sizeof(path_prefix) - 1) == 0)
        return arg + sizeof(path_prefix) - 1;
    return arg;
}

void tool_table_path(const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s%s", TOOL_SHM_DIR, TOOL_SHM_PREFIX, name);
}

void tool_escape_text(const void *p, size_t n, char *out)
{
    static const char hexd[] = "0123456789abcdef";
    const unsigned char *b = p;
    char *o = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = b[i];
        if (c == '\\') {
            *o++ = '\\';
            *o++ = '\\';
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (c == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        } else if (c >= 0x20 && c < 0x7f) {
            *o++ = (char)c;
        } else {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hexd[c >> 4];
            *o++ = hexd[c & 15];
        }
    }
    *o = '\0';
}

void tool_json_string(FILE *f, const void *p, size_t n)
{
    const unsigned char *b = p;
    putc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = b[i];
        if (c == '"' || c == '\\') {
            putc('\\', f);
            putc(c, f);
        } else if (c >= 0x20 && c < 0x7f) {
            putc(c, f);
        } else {
            fprintf(f, "\\u%04x", (unsigned)c);
        }
    }
    putc('"', f);
}

void tool_hex(const void *p, size_t n, char *out)
{
    static const char hexd[] = "0123456789abcdef";
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[b[i] >> 4];
        out[2 * i + 1] = hexd[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void tool_base64(const void *p, size_t n, char *out)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *b = p;
    char *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)b[i] << 16;
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8;
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = '=';
    }
    *o = '\0';
}

void tool_format_left(int64_t ms, char *buf, size_t size)
{
    if (ms < 60 * 1000) {
        snprintf(buf, size, "%.1fs", (double)ms / 1000.0);
        return;
    }
    int64_t s = ms / 1000;
    if (s < 3600)
        snprintf(buf, size, "%dm%02ds", (int)(s / 60), (int)(s % 60));
    else if (s < 86400)
        snprintf(buf, size, "%dh%02dm", (int)(s / 3600), (int)(s / 60 % 60));
    else
        snprintf(buf, size, "%lldd%02dh", (long long)(s / 86400), (int)(s / 3600 % 24));
}

void tool_format_bytes(uint64_t bytes, char *buf, size_t size)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%lluB", (unsigned long long)bytes);
    else
        snprintf(buf, size, "%.1f%s", v, units[u]);
}
