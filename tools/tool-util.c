#include "tool-util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

void tool_lock_path(const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s%s", TOOL_SHM_DIR, TOOL_LK_PREFIX, name);
}

void tool_default_table(char *buf, size_t size)
{
    snprintf(buf, size, TOOL_DEFAULT_TABLE_PREFIX "%lu", (unsigned long)geteuid());
}

int tool_backend_option(struct tool_backend_choice *b, const char *prog, const char *arg)
{
    if (arg[0] == '\0') {
        fprintf(stderr, "%s: --backend: empty URL; the local tables of this host are "
                        "--local\n", prog);
        return -1;
    }
    if (b->local) {
        fprintf(stderr, "%s: --backend and --local exclude each other\n", prog);
        return -1;
    }
    b->given = arg;
    return 0;
}

int tool_local_option(struct tool_backend_choice *b, const char *prog)
{
    if (b->given != NULL) {
        fprintf(stderr, "%s: --backend and --local exclude each other\n", prog);
        return -1;
    }
    b->local = true;
    return 0;
}

void tool_backend_resolve(struct tool_backend_choice *b)
{
    b->url = NULL;
    b->from_env = false;
    if (b->given != NULL) {
        b->url = b->given;
    } else if (!b->local) {
        const char *e = getenv(TOOL_BACKEND_ENV);
        if (e != NULL && e[0] != '\0') {
            b->url = e;
            b->from_env = true;
        }
    }
    if (b->url != NULL)
        tool_url_shown(b->url, b->shown, sizeof(b->shown));
    else
        snprintf(b->shown, sizeof(b->shown), "local");
}

void tool_url_shown(const char *url, char *buf, size_t size)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL) {
        snprintf(buf, size, "%s", url);
        return;
    }
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)     /* the last '@' ends the user part */
        if (auth[i] == '@')
            at = auth + i;
    if (at == NULL) {
        snprintf(buf, size, "%s", url);
        return;
    }
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    /* "user:password@" -> "user:***@"; anything else before '@' -> "***@" */
    size_t keep = colon != NULL ? (size_t)(colon + 1 - url) : (size_t)(auth - url);
    snprintf(buf, size, "%.*s***%s", (int)keep, url, at);
}

bool tool_valid_table_name(const char *name)
{
    size_t n = strnlen(name, SHMLEASE_NAME_MAX + 1);
    if (n == 0 || n > SHMLEASE_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool tool_connection_error(int rc)
{
    return rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -ETIME;
}

const char *tool_backend_error_text(int rc)
{
    switch (-rc) {
    case EINVAL:
        return "invalid backend URL (expected redis://[[user]:password@]host[:port][/db]"
               "[?option=value&...] or unix:///path/to/redis.sock[?db=N&...])";
    case EPROTONOSUPPORT:
        return "backend URL not supported: only redis:// and unix:// (no TLS), and only "
               "when shmlease was built with the Redis backend";
    case ECONNREFUSED:
        return "the Redis server could not be reached (is it running? right address?)";
    case ECONNRESET:
        return "the connection to the Redis server broke during the call";
    case ETIME:
        return "the Redis server did not answer in time";
    case EACCES:
        return "the Redis server refused the call (AUTH or ACL)";
    case ENOSPC:
        return "the Redis server is out of memory (maxmemory)";
    case EPROTO:
        return "the server's keys for this table have another layout, or its answer was "
               "not understood";
    case ENOENT:
        return "no such table on this server";
    default:
        return NULL;
    }
}

bool tool_in_group(gid_t gid)
{
    if (gid == getegid())
        return true;
    int n = getgroups(0, NULL);
    if (n <= 0)
        return false;
    gid_t *groups = calloc((size_t)n, sizeof(*groups));
    if (groups == NULL)
        return false;
    n = getgroups(n, groups);
    bool in = false;
    for (int i = 0; i < n && !in; i++)
        in = groups[i] == gid;
    free(groups);
    return in;
}

int tool_group_id(const char *group, gid_t *gid)
{
    struct group *gr = getgrnam(group);
    if (gr != NULL) {
        *gid = gr->gr_gid;
        return 0;
    }
    unsigned long long v;
    if (tool_parse_uint(group, (gid_t)-2, &v) != 0)
        return -1;
    *gid = (gid_t)v;
    return 0;
}

void tool_user_name(uid_t uid, char *buf, size_t size)
{
    struct passwd *pw = getpwuid(uid);
    if (pw != NULL)
        snprintf(buf, size, "%s", pw->pw_name);
    else
        snprintf(buf, size, "uid %lu", (unsigned long)uid);
}

void tool_group_name(gid_t gid, char *buf, size_t size)
{
    struct group *gr = getgrgid(gid);
    if (gr != NULL)
        snprintf(buf, size, "%s", gr->gr_name);
    else
        snprintf(buf, size, "gid %lu", (unsigned long)gid);
}

/* ---- explaining a table that could not be used --------------------------- */

/* Appends to a fixed buffer, cutting what does not fit. */
struct text {
    char *buf;
    size_t size, len;
};

__attribute__((format(printf, 2, 3)))
static void add(struct text *t, const char *fmt, ...)
{
    if (t->len + 1 >= t->size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len = t->len + (size_t)n < t->size ? t->len + (size_t)n : t->size - 1;
}

/* "alice (mode 0660, group ops)": the group when the mode gives it anything. */
static void add_owner(struct text *t, const struct stat *st)
{
    char user[64], group[64];
    tool_user_name(st->st_uid, user, sizeof(user));
    add(t, "%s (mode %04o", user, (unsigned)(st->st_mode & 07777));
    if (st->st_mode & 070) {
        tool_group_name(st->st_gid, group, sizeof(group));
        add(t, ", group %s", group);
    }
    add(t, ")");
}

/* May this process open the file ST describes with the access WANT (4 read,
 * 6 read and write), as the kernel would judge it from its mode? */
static bool may_open(const struct stat *st, unsigned want)
{
    if (geteuid() == 0)
        return true;
    unsigned m = (unsigned)st->st_mode;
    unsigned bits = st->st_uid == geteuid() ? (m >> 6) & 7 : tool_in_group(st->st_gid) ? (m >> 3) & 7 : m & 7;
    return (bits & want) == want;
}

/* Why may_open(st, want) is false, in words. */
static void add_why_not(struct text *t, const struct stat *st, unsigned want)
{
    char user[64], group[64];
    tool_user_name(st->st_uid, user, sizeof(user));
    tool_group_name(st->st_gid, group, sizeof(group));
    unsigned m = (unsigned)st->st_mode & 0777;
    const char *need = want == 4 ? "read" : "read and write";
    if (st->st_uid == geteuid()) {
        add(t, "its mode %04o does not let even its owner %s it", m, need);
    } else if (tool_in_group(st->st_gid)) {
        unsigned g = (m >> 3) & 7;
        add(t, "mode %04o gives group %s %s", m, group,
            (g & 6) == 4 ? "read only" : (g & 6) == 0 ? "no access" : "write only");
    } else if (((m >> 3) & want) == want) {
        add(t, "you are not in group %s (mode %04o lets only %s and group %s %s it)", group, m, user,
            group, need);
    } else if ((m & 6) == 4 && want == 6) {
        add(t, "mode %04o gives other users read only", m);
    } else {
        add(t, "mode %04o lets only %s %s it", m, user, need);
    }
}

/* What lies at PATH, if it is not a table, in words ("an empty file", "a
 * directory", ...); false if it looks like a shmlease segment. */
static bool add_what_is(struct text *t, const char *path, const struct stat *st)
{
    if (S_ISDIR(st->st_mode)) {
        add(t, "a directory");
        return true;
    }
    if (S_ISFIFO(st->st_mode) || S_ISLNK(st->st_mode) || S_ISSOCK(st->st_mode) ||
        S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
        add(t, "%s", S_ISFIFO(st->st_mode) ? "a FIFO" : S_ISLNK(st->st_mode) ? "a symbolic link"
                   : S_ISSOCK(st->st_mode) ? "a socket" : "a device file");
        return true;
    }
    if (st->st_size == 0) {
        add(t, "an empty file");
        return true;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* The magic is the 8 bytes "SHMLEASE" (docs/file-format.md), or their
     * reverse from a machine of the other byte order. */
    unsigned char head[8] = {0};
    ssize_t got = pread(fd, head, sizeof(head), 0);
    if (got == (ssize_t)sizeof(head) && (!memcmp(head, "SHMLEASE", 8) || !memcmp(head, "ESAELMHS", 8))) {
        close(fd);
        return false;
    }
    /* All zeros? Read it through, up to 64 MiB (an error path). */
    enum { CHUNK = 65536 };
    unsigned char *chunk = malloc(CHUNK);
    bool zeros = chunk != NULL;
    off_t off = 0, limit = 64 << 20;
    while (zeros && off < st->st_size && off < limit) {
        ssize_t n = pread(fd, chunk, CHUNK, off);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n && zeros; i++)
            zeros = chunk[i] == 0;
        off += n;
    }
    free(chunk);
    close(fd);
    if (zeros && off >= st->st_size)
        add(t, "a file of %lld zero bytes", (long long)st->st_size);
    else
        add(t, "a file of %lld bytes without the shmlease magic", (long long)st->st_size);
    return true;
}

bool tool_explain_table_error(const struct tool_table_ref *ref, int rc, char *buf, size_t size)
{
    struct text t = { buf, size, 0 };
    buf[0] = '\0';
    char path[TOOL_PATH_MAX], lpath[TOOL_PATH_MAX], table[300];
    tool_table_path(ref->name, path, sizeof(path));
    tool_lock_path(ref->name, lpath, sizeof(lpath));
    if (ref->is_default)
        snprintf(table, sizeof(table), "your default table '%s'", ref->name);
    else
        snprintf(table, sizeof(table), "table '%s'", ref->name);
    struct stat seg, lk;
    bool have_seg = lstat(path, &seg) == 0, have_lk = lstat(lpath, &lk) == 0;
    bool mine = have_seg && seg.st_uid == geteuid();
    uint64_t ms;

    switch (-rc) {
    case EEXIST:
        if (!have_seg)
            return false;
        add(&t, "%s: %s is ", table, path);
        if (add_what_is(&t, path, &seg)) {
            add(&t, ", not a shmlease table; nothing was created (if nothing else uses it: %s %s)",
                S_ISDIR(seg.st_mode) ? "rmdir" : "rm", path);
        } else {
            t.len = 0;
            add(&t, "%s already exists: it belongs to ", table);
            add_owner(&t, &seg);
        }
        return true;
    case ENOENT:
        if (ref->is_default) {
            add(&t, "%s does not exist yet (%s): nothing was ever held there", table, path);
        } else {
            add(&t, "no such table '%s' (%s does not exist)", ref->name, path);
            if (ref->may_create)
                add(&t, ": create it with 'shmlease create %s', or pass --create", ref->name);
            if (tool_parse_duration_ms(ref->name, &ms) == 0)
                add(&t, "; '%s' looks like a duration: -t names a table, the TTL is --ttl (-T)",
                    ref->name);
        }
        return true;
    case EPERM:
        if (!have_seg || mine || !S_ISREG(seg.st_mode))
            return false;
        add(&t, "%s belongs to ", table);
        add_owner(&t, &seg);
        if (ref->is_default) {
            add(&t, ": someone else made a table under the name of yours, and it is not used; ask root "
                    "to remove it ('shmlease unlink %s'), or name another table with -t", ref->name);
        } else if (may_open(&seg, 6) && (!have_lk || may_open(&lk, 6))) {
            add(&t, ": pass --share to use another user's table");
        } else {
            add(&t, ": it is not yours, and --share would not help: ");
            add_why_not(&t, may_open(&seg, 6) ? &lk : &seg, 6);
        }
        return true;
    case EACCES:
        if (!have_seg)
            return false;
        add(&t, "%s belongs to ", table);
        add_owner(&t, &seg);
        if (ref->removing) {
            char user[64];
            tool_user_name(seg.st_uid, user, sizeof(user));
            add(&t, ": only %s or root may remove it", user);
        } else if (!may_open(&seg, ref->reading ? 4 : 6)) {
            add(&t, ": you may not %s it: ", ref->reading ? "read" : "use");
            add_why_not(&t, &seg, ref->reading ? 4 : 6);
        } else if (have_lk && !ref->reading && !may_open(&lk, 6)) {
            add(&t, ", but its lock file %s belongs to ", lpath);
            add_owner(&t, &lk);
            add(&t, " and does not let you in: ");
            add_why_not(&t, &lk, 6);
            add(&t, "; its mode should give read and write to whoever may write the table");
        } else if (have_lk && !ref->reading) {
            add(&t, ", and its lock file %s belongs to ", lpath);
            add_owner(&t, &lk);
            add(&t, ", who may not write the table: it may have been planted; have it removed "
                    "(by its owner or root)");
        } else {
            return false;
        }
        return true;
    case EPROTO:
        if (!have_seg)
            return false;
        add(&t, "%s: %s is ", table, path);
        if (!add_what_is(&t, path, &seg)) {
            t.len = 0;
            add(&t, "%s (%s) is a shmlease table that this version cannot use: damaged, truncated, made "
                    "by another version, still being built, or its lock file was replaced", table, path);
            return true;
        }
        add(&t, ", not a shmlease table");
        if (ref->removing)
            add(&t, "; nothing was removed (if nothing else uses it: %s %s)",
                S_ISDIR(seg.st_mode) ? "rmdir" : "rm", path);
        else if (!ref->reading)
            add(&t, "; it was left as it is");
        return true;
    default:
        return false;
    }
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
