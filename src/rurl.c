/* Redis backend: parsing the server's URL (rurl.h). */
#include "rurl.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Copies the N bytes at S into OUT (room for MAX bytes and a NUL),
 * decoding %XX escapes when DECODE. 0 or -EINVAL. */
static int copy_part(char *out, size_t max, const char *s, size_t n, int decode)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (decode && c == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
                return -EINVAL;
            char hex[3] = { s[i + 1], s[i + 2], 0 };
            c = (int)strtol(hex, NULL, 16);
            i += 2;
        }
        if (c == 0 || o >= max)
            return -EINVAL;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

/* A decimal number in [lo, hi] made of the N bytes at S. */
static int parse_num(const char *s, size_t n, long lo, long hi, long *out)
{
    if (n == 0 || n > 10)
        return -EINVAL;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

/* One "name=value" of the query string. */
static int parse_option(struct rurl *u, const char *s, size_t n)
{
    const char *eq = memchr(s, '=', n);
    if (!eq)
        return -EINVAL;
    size_t kn = (size_t)(eq - s), vn = n - kn - 1;
    long v;
    if (kn == 2 && !memcmp(s, "db", 2)) {
        if (parse_num(eq + 1, vn, 0, 65535, &v))
            return -EINVAL;
        u->db = (int)v;
        return 0;
    }
    if (parse_num(eq + 1, vn, 1, 3600000, &v))
        return -EINVAL;
    if (kn == 10 && !memcmp(s, "timeout_ms", 10))
        u->timeout_ms = (uint32_t)v;
    else if (kn == 18 && !memcmp(s, "connect_timeout_ms", 18))
        u->connect_timeout_ms = (uint32_t)v;
    else if (kn == 8 && !memcmp(s, "retry_ms", 8))
        u->retry_ms = (uint32_t)v;
    else
        return -EINVAL;                 /* an option we do not know: say so */
    return 0;
}

static int parse_query(struct rurl *u, const char *q)
{
    while (*q) {
        size_t n = strcspn(q, "&");
        if (parse_option(u, q, n))
            return -EINVAL;
        q += n;
        if (*q == '&' && !*++q)
            return -EINVAL;             /* a trailing '&' */
    }
    return 0;
}

/* "[user]:password@" before the host, if any. */
static int parse_userinfo(struct rurl *u, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    if (!colon)       /* "password@" alone is ambiguous in URLs: refuse it */
        return -EINVAL;
    size_t un = (size_t)(colon - s);
    if (copy_part(u->user, RURL_CRED_MAX, s, un, 1) ||
        copy_part(u->pass, RURL_CRED_MAX, colon + 1, n - un - 1, 1))
        return -EINVAL;
    return u->pass[0] ? 0 : -EINVAL;
}

/* "host[:port]" or "[v6addr][:port]". */
static int parse_hostport(struct rurl *u, const char *s, size_t n)
{
    const char *hs = s, *he, *rest;
    if (n && *s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -EINVAL;
        hs = s + 1, he = close, rest = close + 1;
    } else {
        he = memchr(s, ':', n);
        if (!he)
            he = s + n;
        rest = he;
    }
    if (he == hs || copy_part(u->host, RURL_HOST_MAX, hs, (size_t)(he - hs), 0))
        return -EINVAL;
    size_t left = n - (size_t)(rest - s);
    if (left == 0)
        return 0;
    long port;
    if (*rest != ':' || parse_num(rest + 1, left - 1, 1, 65535, &port))
        return -EINVAL;
    u->port = (int)port;
    return 0;
}

/* redis://[userinfo@]host[:port][/db] ; S points after "redis://", up to
 * the query (N bytes). */
static int parse_tcp(struct rurl *u, const char *s, size_t n)
{
    const char *slash = memchr(s, '/', n);
    size_t an = slash ? (size_t)(slash - s) : n;
    const char *at = NULL;
    for (size_t i = 0; i < an; i++)
        if (s[i] == '@')
            at = s + i;                       /* the last '@': passwords may hold one escaped */
    if (at && parse_userinfo(u, s, (size_t)(at - s)))
        return -EINVAL;
    const char *h = at ? at + 1 : s;
    if (parse_hostport(u, h, an - (size_t)(h - s)))
        return -EINVAL;
    if (slash && n - an > 1) {
        long db;
        if (parse_num(slash + 1, n - an - 1, 0, 65535, &db))
            return -EINVAL;
        u->db = (int)db;
    }
    return 0;
}

int shmlease__rurl_parse(const char *url, struct rurl *u)
{
    if (!url || !u)
        return -EINVAL;
    memset(u, 0, sizeof *u);
    u->port = RURL_DEFAULT_PORT;
    u->timeout_ms = RURL_DEFAULT_TIMEOUT_MS;
    u->connect_timeout_ms = RURL_DEFAULT_CONNECT_TIMEOUT_MS;
    u->retry_ms = RURL_DEFAULT_RETRY_MS;
    const char *q = strchr(url, '?');
    size_t n = q ? (size_t)(q - url) : strlen(url);
    int rc;
    if (n >= 8 && !strncmp(url, "redis://", 8)) {
        rc = parse_tcp(u, url + 8, n - 8);
    } else if (n > 8 && !strncmp(url, "unix:///", 8)) {
        u->is_unix = 1;
        rc = copy_part(u->path, RURL_PATH_MAX, url + 7, n - 7, 1);
    } else if (!strncmp(url, "unix:", 5) || !strncmp(url, "redis:", 6)) {
        return -EINVAL;                 /* ours, malformed */
    } else {
        const char *colon = strstr(url, "://");
        return colon && colon != url ? -EPROTONOSUPPORT : -EINVAL;
    }
    if (rc == 0 && q)
        rc = parse_query(u, q + 1);
    return rc ? -EINVAL : 0;
}
