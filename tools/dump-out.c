/*
 * shmlease-dump: output gathered in a buffer and written in large blocks,
 * and number formatting without printf. A dump of 100,000 leases is a
 * million small pieces of text; one stdio call (with its lock) or one
 * printf per piece cost more than reading the table.
 */
#include "dump.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Escaping, fast: keys and metadata are mostly printable ASCII               */

/* Non-zero if a byte of W is below 0x20, 0x7f or above, or a backslash:
 * one that tool_escape_text writes as an escape. */
static uint64_t special8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t lt20 = (w - 0x20 * ones) & ~w & high;
    uint64_t x7f = w ^ (0x7f * ones), bs = w ^ (0x5c * ones);
    uint64_t is7f = (x7f - ones) & ~x7f & high;
    uint64_t isbs = (bs - ones) & ~bs & high;
    return (w & high) | lt20 | is7f | isbs;
}

/* Bytes from the start of P[0..N) that need no escape. */
static size_t plain_prefix(const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (special8(w) != 0)
            break;
    }
    while (i < n && p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
        i++;
    return i;
}

size_t escaped_len(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i = plain_prefix(b, n), len = i;
    for (; i < n; i++) {
        unsigned char c = b[i];
        len += c == '\\' || c == '\n' || c == '\t' || c == '\r' ? 2
               : c >= 0x20 && c < 0x7f                       ? 1
                                                             : 4;
    }
    return len;
}

size_t escape_into(const void *p, size_t n, char *out)
{
    const unsigned char *b = p;
    size_t i = plain_prefix(b, n);
    memcpy(out, b, i);
    if (i == n) {
        out[n] = '\0';
        return n;
    }
    tool_escape_text(b + i, n - i, out + i);
    return i + strlen(out + i);
}

void ob_flush(struct outbuf *ob)
{
    if (ob->len > 0)
        fwrite(ob->buf, 1, ob->len, ob->f);
    ob->len = 0;
}

void ob_put(struct outbuf *ob, const void *p, size_t n)
{
    if (ob->len + n > sizeof(ob->buf)) {
        ob_flush(ob);
        if (n > sizeof(ob->buf)) {
            fwrite(p, 1, n, ob->f);
            return;
        }
    }
    memcpy(ob->buf + ob->len, p, n);
    ob->len += n;
}

void ob_str(struct outbuf *ob, const char *s)
{
    ob_put(ob, s, strlen(s));
}

void ob_char(struct outbuf *ob, char c)
{
    if (ob->len == sizeof(ob->buf))
        ob_flush(ob);
    ob->buf[ob->len++] = c;
}

void ob_spaces(struct outbuf *ob, size_t n)
{
    static const char spaces[64] = "                                                                ";
    while (n > 0) {
        size_t k = n < sizeof(spaces) ? n : sizeof(spaces);
        ob_put(ob, spaces, k);
        n -= k;
    }
}

size_t fmt_u64(char *buf, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

size_t fmt_i64(char *buf, int64_t v)
{
    if (v >= 0)
        return fmt_u64(buf, (uint64_t)v);
    buf[0] = '-';
    return 1 + fmt_u64(buf + 1, (uint64_t)0 - (uint64_t)v);
}

void ob_u64(struct outbuf *ob, uint64_t v)
{
    char b[24];
    ob_put(ob, b, fmt_u64(b, v));
}

void ob_i64(struct outbuf *ob, int64_t v)
{
    char b[24];
    ob_put(ob, b, fmt_i64(b, v));
}

/* Same bytes as tool_json_string: '"' and '\\' escaped with a backslash,
 * printable ASCII as is, every other byte as \u00XX (lower-case hex). */
void ob_json_string(struct outbuf *ob, const void *p, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    const unsigned char *b = p;
    char tmp[6 * 256 + 2];
    ob_char(ob, '"');
    while (n > 0) {
        size_t chunk = n < 256 ? n : 256, k = 0;
        for (size_t i = 0; i < chunk; i++) {
            unsigned char c = b[i];
            if (c == '"' || c == '\\') {
                tmp[k++] = '\\';
                tmp[k++] = (char)c;
            } else if (c >= 0x20 && c < 0x7f) {
                tmp[k++] = (char)c;
            } else {
                memcpy(tmp + k, "\\u00", 4);
                tmp[k + 4] = hexd[c >> 4];
                tmp[k + 5] = hexd[c & 15];
                k += 6;
            }
        }
        ob_put(ob, tmp, k);
        b += chunk;
        n -= chunk;
    }
    ob_char(ob, '"');
}
