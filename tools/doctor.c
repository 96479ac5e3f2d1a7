/*
 * shmlease doctor [--root DIR] [TABLE...]
 *
 * Checks what breaks tables in the field and explains each finding in one
 * sentence, with what to do: OK, WARN (works, but know this), FAIL (broken
 * or about to be); INFO where a check cannot be made, with how to make it
 * by hand. Exit status 1 if anything failed.
 *
 * The host: /dev/shm (a tmpfs, writable, room for a table: a real table
 * of the default capacity is created and removed to find out),
 * systemd-logind's RemoveIPC= (logind.conf and its drop-ins, read as
 * logind reads them), whether this process sees PID 1's /dev/shm and its
 * time and PID namespaces. Each table (those named, or every table in
 * /dev/shm): its files (type, owner, mode, lock file), its format (the
 * segment's magic and format word, docs/file-format.md section 2.1 and 8,
 * read with pread, never mapped), the clock it was made on (time namespace
 * and boot), what the library says when it opens it read-only and, when the
 * caller may write it, read-write (it attaches and detaches like any user;
 * it acquires nothing), and who holds its leases.
 */
#include "doctor.h"
#include "tool-util.h"

#include <shmlease.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PROG "shmlease doctor"

#define DOCTOR_EXIT_OK     0
#define DOCTOR_EXIT_FAILED 1
#define DOCTOR_EXIT_USAGE  TOOL_EX_USAGE

#define TMPFS_MAGIC_ 0x01021994L

/* The segment header's documented fields (docs/file-format.md 2.1). */
#define HDR_MAGIC          0x455341454c4d4853ull   /* "SHMLEASE", little-endian */
#define HDR_MAGIC_SWAPPED  0x53484d4c45415345ull
#define HDR_READY          0x52454459u
#define HDR_LEN            140

enum level { L_OK, L_INFO, L_WARN, L_FAIL };

struct doctor {
    const char *root;             /* "" or --root DIR: where the config is read */
    unsigned fails, warns;
    /* learnt from the probe table (or any table opened) */
    uint32_t format_version;      /* 0 unknown */
    uint64_t default_bytes;       /* a default-capacity segment; 0 unknown */
    uint64_t shm_free;
    /* systemd-logind */
    int remove_ipc;               /* -1 logind not in use here, 0 no, 1 yes */
    char remove_ipc_src[PATH_MAX + 32];
    unsigned long sys_uid_max;
    /* this process */
    uint64_t my_timens;
    uint8_t my_boot[16];
    bool have_boot;
};

/* ------------------------------------------------------------------------ */
/* Output                                                                    */

static void say(struct doctor *d, enum level l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(struct doctor *d, enum level l, const char *fmt, ...)
{
    static const char *const tag[] = { "OK  ", "INFO", "WARN", "FAIL" };
    if (l == L_WARN)
        d->warns++;
    if (l == L_FAIL)
        d->fails++;
    printf("  %s  ", tag[l]);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static const char *user_name(uid_t uid, char *buf, size_t size)
{
    struct passwd *pw = getpwuid(uid);
    if (pw != NULL)
        snprintf(buf, size, "%s", pw->pw_name);
    else
        snprintf(buf, size, "uid %lu", (unsigned long)uid);
    return buf;
}

static const char *group_name(gid_t gid, char *buf, size_t size)
{
    struct group *gr = getgrgid(gid);
    if (gr != NULL)
        snprintf(buf, size, "%s", gr->gr_name);
    else
        snprintf(buf, size, "gid %lu", (unsigned long)gid);
    return buf;
}

static const char *bytes(uint64_t n, char *buf, size_t size)
{
    tool_format_bytes(n, buf, size);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Small readers                                                             */

static void rooted(const struct doctor *d, const char *path, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s", d->root, path);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static uint64_t ns_inode(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_ino : 0;
}

/* The whole of a small file, NUL-terminated, malloc'd; NULL if unreadable. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 1 == cap) {
            char *nb = cap < (1u << 20) ? realloc(buf, cap * 2) : NULL;
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - 1 - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

static void read_self(struct doctor *d)
{
    d->my_timens = ns_inode("/proc/self/ns/time");
    char *s = slurp("/proc/sys/kernel/random/boot_id");
    memset(d->my_boot, 0, sizeof(d->my_boot));
    if (s != NULL) {
        int n = 0;
        for (const char *p = s; *p != '\0' && n < 32; p++) {
            int v = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
            if (v >= 0) {
                d->my_boot[n / 2] = (uint8_t)(d->my_boot[n / 2] << 4 | v);
                n++;
            }
        }
        d->have_boot = n == 32;
        free(s);
    }
}

/* ------------------------------------------------------------------------ */
/* systemd-logind's RemoveIPC=                                               */

/* systemd's boolean words; -1 for anything else. */
static int parse_bool(const char *v)
{
    static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
    static const char *const no[] = { "0", "no", "n", "false", "f", "off" };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Reads RemoveIPC= in section [Login] of PATH (as shown: SHOWN) into *value
 * and its place into src; the last valid assignment wins, as in logind. */
static void parse_logind_file(struct doctor *d, const char *path, const char *shown,
                              int *value)
{
    char *text = slurp(path);
    if (text == NULL)
        return;
    bool login = false;
    int lineno = 0;
    for (char *line = text, *next; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            login = strcmp(s, "[Login]") == 0;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!login || eq == NULL)
            continue;
        *eq = '\0';
        if (strcmp(trim(s), "RemoveIPC") != 0)
            continue;
        const char *v = trim(eq + 1);
        int b = parse_bool(v);
        if (b < 0) {
            say(d, L_WARN, "%s:%d: RemoveIPC=%s is not a boolean: systemd-logind ignores "
                           "the line (write yes or no)", shown, lineno, v);
            continue;
        }
        *value = b;
        snprintf(d->remove_ipc_src, sizeof(d->remove_ipc_src), "set in %s:%d", shown, lineno);
    }
    free(text);
}

static int cmp_dropin(const void *a, const void *b)
{
    const char *x = strrchr(*(char *const *)a, '/') + 1, *y = strrchr(*(char *const *)b, '/') + 1;
    return strcmp(x, y);
}

/* The drop-ins logind reads, in its order: *.conf of each directory, one
 * per file name (the first directory that has it wins), sorted by name.
 * Paths without the root prefix; NULL-terminated, malloc'd. */
static char **logind_dropins(const struct doctor *d)
{
    static const char *const dirs[] = {
        "/etc/systemd/logind.conf.d", "/run/systemd/logind.conf.d",
        "/usr/local/lib/systemd/logind.conf.d", "/usr/lib/systemd/logind.conf.d",
        "/lib/systemd/logind.conf.d",
    };
    size_t n = 0, cap = 16;
    char **list = calloc(cap, sizeof(char *));
    for (size_t i = 0; list != NULL && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char dir[PATH_MAX];
        rooted(d, dirs[i], dir, sizeof(dir));
        DIR *dh = opendir(dir);
        if (dh == NULL)
            continue;
        struct dirent *de;
        while ((de = readdir(dh)) != NULL) {
            size_t len = strlen(de->d_name);
            if (len < 6 || strcmp(de->d_name + len - 5, ".conf") != 0)
                continue;
            bool dup = false;
            for (size_t j = 0; j < n && !dup; j++)
                dup = strcmp(strrchr(list[j], '/') + 1, de->d_name) == 0;
            if (dup)
                continue;
            if (n + 2 > cap) {
                char **nl = realloc(list, cap * 2 * sizeof(char *));
                if (nl == NULL)
                    break;
                list = nl;
                cap *= 2;
            }
            if (asprintf(&list[n], "%s/%s", dirs[i], de->d_name) >= 0)
                n++;
        }
        closedir(dh);
    }
    if (list == NULL)
        return NULL;
    list[n] = NULL;
    qsort(list, n, sizeof(char *), cmp_dropin);
    return list;
}

/* SYS_UID_MAX of login.defs, else 999: systemd's "system user" bound. */
static unsigned long sys_uid_max(const struct doctor *d)
{
    char path[PATH_MAX];
    rooted(d, "/etc/login.defs", path, sizeof(path));
    char *text = slurp(path);
    unsigned long max = 999;
    if (text != NULL) {
        for (char *p = text; (p = strstr(p, "SYS_UID_MAX")) != NULL; p++) {
            if ((p == text || p[-1] == '\n') && (p[11] == ' ' || p[11] == '\t')) {
                char *end;
                unsigned long v = strtoul(p + 11, &end, 10);
                if (end != p + 11)
                    max = v;
            }
        }
        free(text);
    }
    return max;
}

static bool lingering(const struct doctor *d, uid_t uid)
{
    struct passwd *pw = getpwuid(uid);
    if (pw == NULL)
        return false;
    char rel[PATH_MAX], path[PATH_MAX];
    snprintf(rel, sizeof(rel), "/var/lib/systemd/linger/%s", pw->pw_name);
    rooted(d, rel, path, sizeof(path));
    return exists(path);
}

/* The advice for a regular user whose tables logind removes. */
static const char *remove_ipc_advice(void)
{
    return "run the programs that use such a table as a system user or root, enable lingering "
           "(loginctl enable-linger USER), or set RemoveIPC=no in a drop-in "
           "(/etc/systemd/logind.conf.d/shmlease.conf) and restart systemd-logind";
}

static void check_logind(struct doctor *d)
{
    char path[PATH_MAX];
    d->sys_uid_max = sys_uid_max(d);
    rooted(d, "/run/systemd/system", path, sizeof(path));
    if (!exists(path)) {
        d->remove_ipc = -1;
        say(d, L_OK, "systemd is not running here (no %s): systemd-logind's RemoveIPC= "
                     "does not apply", path);
        return;
    }
    int value = 1;                    /* logind's default */
    snprintf(d->remove_ipc_src, sizeof(d->remove_ipc_src),
             "logind's default: no configuration file sets it");
    static const char *const mains[] = {
        "/etc/systemd/logind.conf", "/run/systemd/logind.conf",
        "/usr/local/lib/systemd/logind.conf", "/usr/lib/systemd/logind.conf",
    };
    for (size_t i = 0; i < sizeof(mains) / sizeof(mains[0]); i++) {
        rooted(d, mains[i], path, sizeof(path));
        if (exists(path)) {
            parse_logind_file(d, path, mains[i], &value);
            break;
        }
    }
    char **dropins = logind_dropins(d);
    for (size_t i = 0; dropins != NULL && dropins[i] != NULL; i++) {
        rooted(d, dropins[i], path, sizeof(path));
        parse_logind_file(d, path, dropins[i], &value);
        free(dropins[i]);
    }
    free(dropins);
    d->remove_ipc = value;
    if (value == 0) {
        say(d, L_OK, "systemd-logind: RemoveIPC=no (%s): it leaves users' shared memory "
                     "alone when they log out", d->remove_ipc_src);
        return;
    }
    uid_t me = geteuid();
    char who[64];
    user_name(me, who, sizeof(who));
    if (me == 0 || me <= d->sys_uid_max)
        say(d, L_OK, "systemd-logind: RemoveIPC=yes (%s) deletes the tables of a regular "
                     "user when their last login session ends; you (%s, uid %lu) are a "
                     "system user (uid <= %lu): exempt",
            d->remove_ipc_src, who, (unsigned long)me, d->sys_uid_max);
    else if (lingering(d, me))
        say(d, L_OK, "systemd-logind: RemoveIPC=yes (%s), but lingering is enabled for %s: "
                     "logind keeps your tables after you log out", d->remove_ipc_src, who);
    else
        say(d, L_WARN, "systemd-logind: RemoveIPC=yes (%s): the tables you (%s, uid %lu) "
                       "create are deleted when your last login session ends, under the "
                       "processes that use them; %s",
            d->remove_ipc_src, who, (unsigned long)me, remove_ipc_advice());
}

/* ------------------------------------------------------------------------ */
/* /dev/shm                                                                  */

/* Creates and removes a table of the default capacity: the truth about
 * room and permission in /dev/shm, and this library's format version. */
static void probe_table(struct doctor *d, const struct statvfs *vf)
{
    char name[64], fb[32], tb[32], sb[32];
    snprintf(name, sizeof(name), "doctor-probe.%ld", (long)getpid());
    shmlease_options o;
    memset(&o, 0, sizeof(o));
    o.flags = SHMLEASE_OPEN_EXCL;
    shmlease_table *t = NULL;
    int rc = shmlease_open(name, &o, &t);
    uint64_t total = (uint64_t)vf->f_blocks * vf->f_frsize;
    if (rc == -ENOSPC) {
        say(d, L_FAIL, "/dev/shm is full or too small: %s free of %s, and a new table of the "
                       "default capacity (%u keys) does not fit (ENOSPC); remove unused "
                       "tables (shmlease-dump --list) or enlarge /dev/shm (mount -o "
                       "remount,size=512m /dev/shm; docker run --shm-size=512m)",
            bytes(d->shm_free, fb, sizeof(fb)), bytes(total, tb, sizeof(tb)),
            SHMLEASE_DEFAULT_CAPACITY);
        return;
    }
    if (rc != 0) {
        say(d, L_FAIL, "cannot create a table in /dev/shm: %s (%s)", shmlease_strerror(rc),
            shmlease_errname(rc));
        return;
    }
    shmlease_stats st;
    if (shmlease_stats_get(t, &st) == 0) {
        d->default_bytes = st.segment_bytes;
        d->format_version = st.format_version;
    }
    shmlease_close(t);
    shmlease_unlink(name);
    uint64_t room = d->default_bytes ? d->shm_free / d->default_bytes : 0;
    if (d->default_bytes != 0 && room < 4)
        say(d, L_WARN, "/dev/shm is nearly full: %s free of %s, room for %llu more table%s "
                       "of the default capacity (%s each); remove unused tables or "
                       "enlarge /dev/shm (mount -o remount,size=512m /dev/shm; docker run "
                       "--shm-size=512m)",
            bytes(d->shm_free, fb, sizeof(fb)), bytes(total, tb, sizeof(tb)),
            (unsigned long long)room, room == 1 ? "" : "s",
            bytes(d->default_bytes, sb, sizeof(sb)));
    else
        say(d, L_OK, "/dev/shm: %s free of %s; a table of the default capacity (%u keys) "
                     "takes %s",
            bytes(d->shm_free, fb, sizeof(fb)), bytes(total, tb, sizeof(tb)),
            SHMLEASE_DEFAULT_CAPACITY, bytes(d->default_bytes, sb, sizeof(sb)));
}

static void check_shm(struct doctor *d)
{
    struct statfs sf;
    struct stat sb;
    if (statfs(TOOL_SHM_DIR, &sf) != 0 || stat(TOOL_SHM_DIR, &sb) != 0) {
        say(d, L_FAIL, TOOL_SHM_DIR ": %s: tables live there; mount a tmpfs on it "
                       "(mount -t tmpfs -o mode=1777 tmpfs /dev/shm)", strerror(errno));
        return;
    }
    if ((long)sf.f_type != TMPFS_MAGIC_)
        say(d, L_WARN, TOOL_SHM_DIR " is not a tmpfs (filesystem type 0x%lx): tables are "
                       "files on that filesystem, not in memory; mount a tmpfs on it",
            (unsigned long)sf.f_type);
    if ((sb.st_mode & 07777) != 01777)
        say(d, L_WARN, TOOL_SHM_DIR " has mode %04o, not 1777: users who may not write "
                       "it cannot create tables", (unsigned)(sb.st_mode & 07777));
    struct statvfs vf;
    if (statvfs(TOOL_SHM_DIR, &vf) != 0) {
        say(d, L_FAIL, "statvfs(" TOOL_SHM_DIR "): %s", strerror(errno));
        return;
    }
    d->shm_free = (uint64_t)vf.f_bavail * vf.f_frsize;
    if (access(TOOL_SHM_DIR, W_OK | X_OK) != 0) {
        say(d, L_FAIL, "you may not create files in " TOOL_SHM_DIR " (%s): you can use "
                       "tables that exist, not make new ones", strerror(errno));
        return;
    }
    probe_table(d, &vf);
}

/* ------------------------------------------------------------------------ */
/* Namespaces                                                                */

static bool in_container(void)
{
    if (exists("/.dockerenv") || exists("/run/.containerenv"))
        return true;
    char *env = slurp("/proc/1/environ");
    bool found = false;
    if (env != NULL) {
        /* NUL-separated: slurp stops at none of them, but strstr does. */
        found = strncmp(env, "container=", 10) == 0;
        free(env);
    }
    return found;
}

/* The device (major:minor) and root of the filesystem that holds /dev/shm
 * for the process whose mountinfo is PATH: the last mount (the top one) at
 * the longest mount point that contains /dev/shm. */
static bool shm_mount(const char *path, unsigned *maj, unsigned *min, char *root, size_t size)
{
    char *text = slurp(path);
    if (text == NULL)
        return false;
    size_t best = 0;
    bool found = false;
    for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        unsigned a, b;
        char r[512], mp[512];
        if (sscanf(line, "%*u %*u %u:%u %511s %511s", &a, &b, r, mp) != 4)
            continue;
        size_t len = strlen(mp);
        bool contains = strcmp(mp, "/") == 0 ||
                        (strncmp(TOOL_SHM_DIR, mp, len) == 0 &&
                         (TOOL_SHM_DIR[len] == '\0' || TOOL_SHM_DIR[len] == '/'));
        if (!contains || len < best)
            continue;
        best = len;
        found = true;
        *maj = a;
        *min = b;
        snprintf(root, size, "%s", r);
    }
    free(text);
    return found;
}

static void check_namespaces(struct doctor *d)
{
    unsigned m1, n1, m2, n2;
    char r1[512], r2[512];
    errno = 0;
    if (!shm_mount("/proc/self/mountinfo", &m1, &n1, r1, sizeof(r1)) ||
        !shm_mount("/proc/1/mountinfo", &m2, &n2, r2, sizeof(r2))) {
        say(d, L_INFO, "cannot compare this process's /dev/shm with PID 1's (%s): "
                       "processes share tables only when they see the same /dev/shm; "
                       "compare `stat -L -c %%d:%%i /dev/shm` in each container or service",
            errno != 0 ? strerror(errno) : "no /dev/shm in /proc/1/mountinfo");
    } else if (m1 != m2 || n1 != n2 || strcmp(r1, r2) != 0) {
        say(d, L_WARN, "this process sees another /dev/shm (filesystem %u:%u) than PID 1 "
                       "(filesystem %u:%u): its tables are invisible to the processes that "
                       "see PID 1's, and theirs to it; share one /dev/shm (docker run "
                       "--ipc=host or --ipc=container:NAME, or the same tmpfs mounted in "
                       "each)", m1, n1, m2, n2);
    } else {
        uint64_t ns_me = ns_inode("/proc/self/ns/mnt"), ns_1 = ns_inode("/proc/1/ns/mnt");
        say(d, L_OK, "/dev/shm is the one PID 1 sees (filesystem %u:%u%s)", m1, n1,
            ns_me != 0 && ns_1 != 0 && ns_me != ns_1 ? ", from another mount namespace" : "");
    }
    if (in_container())
        say(d, L_INFO, "this is a container: only processes that see this /dev/shm share "
                       "its tables; another container needs --ipc=container:NAME or "
                       "--ipc=host (Kubernetes: the same pod, an emptyDir of medium Memory "
                       "at /dev/shm)");
    uint64_t t_me = d->my_timens, t_1 = ns_inode("/proc/1/ns/time");
    if (t_me != 0 && t_1 != 0 && t_me != t_1)
        say(d, L_WARN, "this process is in another time namespace than PID 1: a table "
                       "made on one side cannot be used read-write on the other (EXDEV: "
                       "its deadlines are on another monotonic clock)");
    uint64_t p_me = ns_inode("/proc/self/ns/pid"), p_1 = ns_inode("/proc/1/ns/pid");
    if (p_me != 0 && p_1 != 0 && p_me != p_1)
        say(d, L_WARN, "this process is in another PID namespace than the /proc it sees: "
                       "holders' PIDs shown here may name other processes; liveness is "
                       "still right (it comes from kernel locks)");
}

/* ------------------------------------------------------------------------ */
/* One table                                                                 */

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

struct seg_header {
    bool read;                 /* the header bytes could be read */
    uint64_t size;             /* of the file */
    size_t len;
    unsigned char b[HDR_LEN];
};

/* The format as the segment's first bytes tell it; false (and a FAIL) when
 * it is not a shmlease segment this library can read. */
static bool check_format(struct doctor *d, const char *name, const struct seg_header *h)
{
    if (!h->read)
        return true;                  /* the library's open will tell */
    if (h->len < 16) {
        say(d, L_FAIL, "only %zu bytes long: not a shmlease table (a creator that died "
                       "before sizing it, or another program's file); if no process uses "
                       "it, remove it (shmlease unlink %s)", h->len, name);
        return false;
    }
    uint64_t magic = le64(h->b), word = le64(h->b + 8);
    if (magic == HDR_MAGIC_SWAPPED) {
        say(d, L_FAIL, "a shmlease table of the other byte order (made on a big-endian "
                       "machine): this library cannot read it; remove it (shmlease unlink "
                       "%s)", name);
        return false;
    }
    if (magic != HDR_MAGIC) {
        bool zero = true;
        for (size_t i = 0; i < h->len && zero; i++)
            zero = h->b[i] == 0;
        say(d, L_FAIL, "%s: not a shmlease table (no SHMLEASE magic at offset 0); if no "
                       "process uses it, remove it (shmlease unlink %s)",
            zero ? "its header is all zero (a creator died before writing it, or another "
                   "program's file)"
                 : "another program's file under a shmlease name",
            name);
        return false;
    }
    unsigned version = (unsigned)(word >> 56);
    uint64_t total = h->len >= 72 ? le64(h->b + 64) : 0;
    if (total != 0 && version == d->format_version && h->size < total) {
        say(d, L_FAIL, "truncated: %llu bytes of the %llu its header says; every process "
                       "that touches the missing part dies of SIGBUS, and opens refuse it "
                       "(EPROTO); stop its users and make it again (shmlease unlink %s)",
            (unsigned long long)h->size, (unsigned long long)total, name);
        return false;
    }
    if (d->format_version != 0 && version != d->format_version) {
        say(d, L_FAIL, "a shmlease table of format %u, and this library reads format %u: "
                       "made by %s version of shmlease; the library refuses it (EPROTO). "
                       "Stop the programs that use it, remove it (shmlease unlink %s) and "
                       "let this version create it again, or use the version that made it",
            version, d->format_version, version < d->format_version ? "an older" : "a newer",
            name);
        return false;
    }
    if (h->len >= HDR_LEN && le32(h->b + 136) != HDR_READY)
        say(d, L_WARN, "not initialised: its creator died while making it, or is making it "
                       "now; the next read-write open makes it again");
    return true;
}

/* The clock the table was made on (creator's time namespace and boot). */
static void check_clock(struct doctor *d, const char *name, const struct seg_header *h)
{
    if (!h->read || h->len < HDR_LEN || le64(h->b) != HDR_MAGIC)
        return;
    uint64_t timens = le64(h->b + 88);
    const unsigned char *boot = h->b + 96;
    bool boot_known = false;
    for (int i = 0; i < 16; i++)
        boot_known |= boot[i] != 0;
    if (d->have_boot && boot_known && memcmp(boot, d->my_boot, 16) != 0) {
        say(d, L_FAIL, "made during another boot (its boot id is not this boot's): its "
                       "deadlines are on a clock that no longer exists, and read-write opens "
                       "fail (EXDEV); remove it (shmlease unlink %s)", name);
        return;
    }
    if (d->my_timens != 0 && timens != 0 && timens != d->my_timens)
        say(d, L_FAIL, "made in another time namespace (namespace inode %llu; yours is "
                       "%llu): its deadlines are on that namespace's monotonic clock, so "
                       "read-write opens from here fail (EXDEV); use it from processes of "
                       "the creator's time namespace, or give each namespace its own table",
            (unsigned long long)timens, (unsigned long long)d->my_timens);
    else if (timens != 0 && d->my_timens != 0)
        say(d, L_OK, "made in this time namespace and boot: its deadlines are on your clock");
}

/* The lock file beside the segment: present, the one the segment was made
 * with, and open to every class that may write the segment. */
static void check_lock_file(struct doctor *d, const char *name, const struct stat *seg,
                            const struct seg_header *h)
{
    char lk[sizeof(TOOL_SHM_DIR) + SHMLEASE_NAME_MAX + 32];
    snprintf(lk, sizeof(lk), TOOL_SHM_DIR "/shmlease-lk.%s", name);
    struct stat sb;
    if (lstat(lk, &sb) != 0) {
        say(d, L_FAIL, "its lock file %s is missing (%s): a read-write open makes a new one "
                       "and then refuses the table (EPROTO), since the holders' locks were "
                       "on the old one; stop its users and make the table again "
                       "(shmlease unlink %s)", lk, strerror(errno), name);
        return;
    }
    if (h->read && h->len >= HDR_LEN && le64(h->b) == HDR_MAGIC &&
        (le64(h->b + 112) != (uint64_t)sb.st_ino || le64(h->b + 120) != (uint64_t)sb.st_dev)) {
        say(d, L_FAIL, "its lock file %s is not the one it was made with (removed and made "
                       "again, or replaced): read-write opens refuse the table (EPROTO); "
                       "stop its users and make the table again (shmlease unlink %s)",
            lk, name);
        return;
    }
    unsigned smode = seg->st_mode & 0777, lmode = sb.st_mode & 0777, need = 0;
    if (smode & 0200)
        need |= 0600;
    if (smode & 0020)
        need |= 0060;
    if (smode & 0002)
        need |= 0006;
    char o1[64], o2[64], g1[64], g2[64];
    if (!S_ISREG(sb.st_mode)) {
        say(d, L_FAIL, "its lock file %s is not a regular file: remove it and the table "
                       "(shmlease unlink %s)", lk, name);
    } else if (sb.st_uid != seg->st_uid || ((smode & 0020) && sb.st_gid != seg->st_gid)) {
        say(d, L_FAIL, "its lock file belongs to %s:%s and the segment to %s:%s: writers "
                       "of the segment may be unable to open the lock file (EACCES); make "
                       "them the same (chown %s:%s %s)",
            user_name(sb.st_uid, o1, sizeof(o1)), group_name(sb.st_gid, g1, sizeof(g1)),
            user_name(seg->st_uid, o2, sizeof(o2)), group_name(seg->st_gid, g2, sizeof(g2)),
            o2, g2, lk);
    } else if ((lmode & need) != need) {
        say(d, L_FAIL, "its lock file has mode %04o where the segment has %04o: some users "
                       "who may write the segment cannot open the lock file, and their "
                       "opens fail (EACCES); chmod %04o %s", lmode, smode, need, lk);
    }
}

enum access { ACCESS_NONE, ACCESS_READ, ACCESS_WRITE };

/* Owner, mode, and what the caller may do with the table's files: nothing,
 * read, or write both (then a read-write open is worth trying). */
static enum access check_access(struct doctor *d, const char *name, const char *path,
                                const struct stat *sb, bool named)
{
    char own[64], grp[64], me[64], size[32];
    unsigned mode = sb->st_mode & 07777;
    say(d, L_OK, "%s: %s, owner %s, group %s, mode %04o", path,
        bytes((uint64_t)sb->st_size, size, sizeof(size)), user_name(sb->st_uid, own, sizeof(own)),
        group_name(sb->st_gid, grp, sizeof(grp)), mode);
    if (mode & 0002)
        say(d, L_WARN, "any user of this host may write it (mode %04o): any of them can "
                       "forge or break leases, or truncate it (every user of it then dies "
                       "of SIGBUS); share it with a group instead (mode 0660 and a group "
                       "of its users)", mode);
    char lk[sizeof(TOOL_SHM_DIR) + SHMLEASE_NAME_MAX + 32];
    snprintf(lk, sizeof(lk), TOOL_SHM_DIR "/shmlease-lk.%s", name);
    bool r = faccessat(AT_FDCWD, path, R_OK, AT_EACCESS) == 0;
    bool w = r && faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0;
    user_name(geteuid(), me, sizeof(me));
    if (!r)
        say(d, named ? L_FAIL : L_OK, "you (%s) may not read it (owner %s, group %s, mode %04o)%s",
            me, own, grp, mode,
            named ? ": ask its owner to share it with a group you are in (mode 0660)"
                  : ": not shared with you, nothing to check");
    else if (!w)
        say(d, named ? L_WARN : L_OK,
            "you (%s) may inspect it but not take leases in it (owner %s, group %s, mode "
            "%04o)%s", me, own, grp, mode,
            named ? ": to use it, ask its owner to give a group you are in write access "
                    "(mode 0660)"
                  : "");
    if (d->remove_ipc == 1 && sb->st_uid != 0 && sb->st_uid > d->sys_uid_max &&
        !lingering(d, sb->st_uid))
        say(d, L_WARN, "it belongs to %s (uid %lu), a regular user: systemd-logind deletes it "
                       "when %s's last login session ends (RemoveIPC=yes, %s), under the "
                       "processes that use it; %s",
            own, (unsigned long)sb->st_uid, own, d->remove_ipc_src, remove_ipc_advice());
    /* A lock file that is missing or closed to a writer is check_lock_file's. */
    if (!r)
        return ACCESS_NONE;
    return w && faccessat(AT_FDCWD, lk, R_OK | W_OK, AT_EACCESS) == 0 ? ACCESS_WRITE
                                                                       : ACCESS_READ;
}

struct holders {
    uint64_t leases, dead, other_ns;
    char other_key[4 * SHMLEASE_KEY_MAX + 1];
    int32_t other_pid;
};

static int count_holder(const shmlease_info *in, void *arg)
{
    struct holders *h = arg;
    h->leases++;
    if (in->in_grace || in->holder_pid == 0)
        return 0;
    if (in->holder_alive == 0)
        h->dead++;
    if (in->holder_other_pidns) {
        if (h->other_ns++ == 0) {
            tool_escape_text(in->key, strnlen(in->key, sizeof(in->key)), h->other_key);
            h->other_pid = in->holder_pid;
        }
    }
    return 0;
}

/* What the library says on a read-only open, and the table's state. False
 * if it refused the table. */
static bool check_readonly(struct doctor *d, const char *name, const struct seg_header *h)
{
    shmlease_options o;
    memset(&o, 0, sizeof(o));
    o.flags = SHMLEASE_OPEN_READONLY | SHMLEASE_OPEN_NOCREATE;
    shmlease_table *t = NULL;
    int rc = shmlease_open(name, &o, &t);
    if (rc == -EACCES)
        return false;                 /* said by check_access */
    if (rc != 0) {
        char fmt[64] = "";
        if (h->read && h->len >= 16 && le64(h->b) == HDR_MAGIC)
            snprintf(fmt, sizeof(fmt), " (its header says format %u)",
                     (unsigned)(le64(h->b + 8) >> 56));
        if (rc == -EPROTO)
            say(d, L_FAIL, "the library refuses it (EPROTO)%s: corrupt, truncated, made by "
                           "another build (32-bit, another format), or its structural lock "
                           "is damaged; if no process uses it, remove it (shmlease unlink %s)",
                fmt, name);
        else
            say(d, L_FAIL, "the library refuses it: %s (%s)", shmlease_strerror(rc),
                shmlease_errname(rc));
        return false;
    }
    shmlease_stats st;
    struct holders hold;
    memset(&hold, 0, sizeof(hold));
    if (shmlease_stats_get(t, &st) == 0) {
        if (d->format_version == 0)
            d->format_version = st.format_version;
        say(d, L_OK, "format %u, capacity %u keys: %u held, %u live, %u handle%s attached",
            st.format_version, st.capacity, st.held, st.live_keys, st.attached,
            st.attached == 1 ? "" : "s");
        if (st.live_keys >= st.capacity)
            say(d, L_WARN, "full: %s %u key%s in use, and an acquire of a new key gets "
                           "ENOSPC until one is released; make a bigger table "
                           "(shmlease create NAME --capacity N)",
                st.capacity == 1 ? "its" : "all", st.capacity,
                st.capacity == 1 ? " is" : "s are");
        if (st.attached + 64 > SHMLEASE_HANDLES_MAX)
            say(d, L_WARN, "%u handles attached, the limit is %d: more opens get EUSERS",
                st.attached, SHMLEASE_HANDLES_MAX);
    }
    shmlease_foreach(t, count_holder, &hold);
    shmlease_close(t);
    if (hold.dead > 0)
        say(d, L_OK, "%llu lease%s held by exited processes: free for the next acquirer "
                     "at once", (unsigned long long)hold.dead, hold.dead == 1 ? "" : "s");
    if (hold.other_ns > 0)
        say(d, L_WARN, "%llu lease%s held by processes of another PID namespace (key %s, "
                       "PID %d there): liveness is still exact (kernel locks), but their "
                       "PIDs mean nothing here: never kill by them; find the holders in "
                       "their own namespace (container)",
            (unsigned long long)hold.other_ns, hold.other_ns == 1 ? " is" : "s are", hold.other_key,
            (int)hold.other_pid);
    return true;
}

/* A read-write attach, as a user of the table does (detached at once;
 * nothing acquired). */
static void check_readwrite(struct doctor *d, const char *name)
{
    shmlease_options o;
    memset(&o, 0, sizeof(o));
    o.flags = SHMLEASE_OPEN_NOCREATE;
    /* Another user's table is attached only when the caller agrees to
     * share it: what a user of a shared table does, and what is checked. */
    o.flags |= SHMLEASE_OPEN_SHARE;
    o.open_timeout_ms = 2000;
    shmlease_table *t = NULL;
    int rc = shmlease_open(name, &o, &t);
    shmlease_close(t);
    switch (-rc) {
    case 0:
        say(d, L_OK, "a read-write attach works: you can take leases in it");
        break;
    case EXDEV:
        say(d, L_FAIL, "a read-write attach fails (EXDEV): the table was made on another "
                       "clock (another time namespace or boot); use it from the creator's "
                       "time namespace, or remove it (shmlease unlink %s)", name);
        break;
    case ETIMEDOUT:
        say(d, L_WARN, "a read-write attach waited 2 s for the table's structural lock: its "
                       "holder is stopped (SIGSTOP, a debugger, a frozen cgroup); existing "
                       "keys still work, new keys and new handles wait; continue or kill it");
        break;
    case EUSERS:
        say(d, L_FAIL, "a read-write attach fails: %d handles are attached already (EUSERS)",
            SHMLEASE_HANDLES_MAX);
        break;
    default:
        say(d, L_FAIL, "a read-write attach fails: %s (%s)", shmlease_strerror(rc),
            shmlease_errname(rc));
        break;
    }
}

static void check_table(struct doctor *d, const char *name, bool named)
{
    char path[sizeof(TOOL_SHM_DIR) + SHMLEASE_NAME_MAX + 32];
    tool_table_path(name, path, sizeof(path));
    printf("table %s:\n", name);
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        char fb[32], sz[32];
        if (errno == ENOENT && d->default_bytes != 0)
            say(d, L_FAIL, "no such table (%s); a new one of the default capacity would "
                           "take %s of the %s free in /dev/shm", path,
                bytes(d->default_bytes, sz, sizeof(sz)), bytes(d->shm_free, fb, sizeof(fb)));
        else
            say(d, L_FAIL, "%s: %s", path, strerror(errno));
        return;
    }
    if (!S_ISREG(sb.st_mode)) {
        say(d, L_FAIL, "%s is not a regular file but a %s: something else squats the "
                       "table's name; remove it if nothing uses it",
            path, S_ISDIR(sb.st_mode) ? "directory" : S_ISLNK(sb.st_mode) ? "symbolic link"
                  : S_ISFIFO(sb.st_mode) ? "FIFO" : "special file");
        return;
    }
    enum access access = check_access(d, name, path, &sb, named);
    if (access == ACCESS_NONE)
        return;                       /* nothing more this user can learn */
    struct seg_header h;
    memset(&h, 0, sizeof(h));
    h.size = (uint64_t)sb.st_size;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = pread(fd, h.b, sizeof(h.b), 0);
        if (n >= 0) {
            h.read = true;
            h.len = (size_t)n;
        }
        close(fd);
    }
    if (!check_format(d, name, &h))
        return;
    check_lock_file(d, name, &sb, &h);
    check_clock(d, name, &h);
    if (!check_readonly(d, name, &h))
        return;
    if (access == ACCESS_WRITE)
        check_readwrite(d, name);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */

static void usage(FILE *f)
{
    fprintf(f,
"Usage: shmlease doctor [--root DIR] [--local] [TABLE...]\n"
"\n"
"Checks what breaks shmlease tables in the field and explains each finding:\n"
"OK, INFO (a check that could not be made, and how to make it), WARN (works,\n"
"but know this), FAIL (broken, or about to be), each with what to do.\n"
"\n"
"The host: /dev/shm (a tmpfs, writable, room for a new table: one of the\n"
"default capacity is created and removed), systemd-logind's RemoveIPC=\n"
"(deletes a regular user's tables at logout), whether this process sees PID\n"
"1's /dev/shm, time and PID namespaces. Each TABLE (default: every table in\n"
"/dev/shm): type, owner and mode of its files, format version, the clock it\n"
"was made on, what the library says when opening it read-only and, if you\n"
"may write it, read-write (attach and detach; nothing is acquired), and\n"
"holders that are dead or in another PID namespace.\n"
"\n"
"Options:\n"
"  --root DIR   read the system's configuration (logind.conf and its drop-ins,\n"
"               /etc/login.defs, lingering users, /run/systemd/system) under\n"
"               DIR: a container image, or a test\n"
"  --local      check the local tables even if " TOOL_BACKEND_ENV " is set\n"
"  -h, --help   this help\n"
"The doctor checks this host's shared memory and the local tables in it: with\n"
"--backend URL, or " TOOL_BACKEND_ENV " set (and no --local), it stops with a usage\n"
"error, since a table on a Redis server has no segment here to check;\n"
"shmlease-dump --backend URL NAME shows such a table.\n"
"\n"
"Exit status:\n"
"  0   nothing failed (warnings may have been given)\n"
"  1   something failed (a FAIL line)\n"
"  64  usage error\n");
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every table name in /dev/shm (the doctor's own probe left out), sorted. */
static char **scan(size_t *n)
{
    *n = 0;
    DIR *dh = opendir(TOOL_SHM_DIR);
    if (dh == NULL)
        return NULL;
    size_t cap = 16;
    char **names = malloc(cap * sizeof(char *));
    struct dirent *de;
    size_t pl = strlen(TOOL_SHM_PREFIX);
    while (names != NULL && (de = readdir(dh)) != NULL) {
        if (strncmp(de->d_name, TOOL_SHM_PREFIX, pl) != 0 || de->d_name[pl] == '\0' ||
            strncmp(de->d_name + pl, "doctor-probe.", 13) == 0)
            continue;
        if (*n + 1 >= cap) {
            char **nn = realloc(names, cap * 2 * sizeof(char *));
            if (nn == NULL)
                break;
            names = nn;
            cap *= 2;
        }
        names[*n] = strdup(de->d_name + pl);
        if (names[*n] != NULL)
            (*n)++;
    }
    closedir(dh);
    if (names != NULL)
        qsort(names, *n, sizeof(char *), cmp_name);
    return names;
}

int cmd_doctor(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "root", required_argument, NULL, 'R' },
        { "backend", required_argument, NULL, 'B' },
        { "local", no_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct doctor d;
    struct tool_backend_choice bc = { 0 };
    memset(&d, 0, sizeof(d));
    d.root = "";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case 'R': {
            struct stat sb;
            if (stat(optarg, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
                fprintf(stderr, PROG ": --root %s: not a directory\n", optarg);
                return DOCTOR_EXIT_USAGE;
            }
            d.root = strcmp(optarg, "/") == 0 ? "" : optarg;
            break;
        }
        case 'B':
            if (tool_backend_option(&bc, PROG, optarg) != 0)
                return DOCTOR_EXIT_USAGE;
            break;
        case 'L':
            if (tool_local_option(&bc, PROG) != 0)
                return DOCTOR_EXIT_USAGE;
            break;
        case 'h':
            usage(stdout);
            return DOCTOR_EXIT_OK;
        default:
            fprintf(stderr, "Try 'shmlease doctor --help'.\n");
            return DOCTOR_EXIT_USAGE;
        }
    }
    tool_backend_resolve(&bc);
    if (bc.url != NULL) {
        fprintf(stderr, PROG ": checks this host's shared memory (" TOOL_SHM_DIR ") and the "
                        "local tables in it; a table on the Redis server %s%s has no segment "
                        "here to check: 'shmlease-dump --backend URL NAME' shows it (--local: "
                        "check the local tables)\n", bc.shown,
                bc.from_env ? " (from " TOOL_BACKEND_ENV ")" : "");
        return DOCTOR_EXIT_USAGE;
    }
    for (int i = optind; i < argc; i++) {
        const char *n = tool_table_name(argv[i]);
        size_t len = strlen(n);
        if (len == 0 || len > SHMLEASE_NAME_MAX || strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "abcdefghijklmnopqrstuvwxyz0123456789._-") != len || strcmp(n, ".") == 0 ||
            strcmp(n, "..") == 0) {
            fprintf(stderr, PROG ": invalid table name '%s' (allowed: [A-Za-z0-9._-]{1,%d})\n",
                    argv[i], SHMLEASE_NAME_MAX);
            return DOCTOR_EXIT_USAGE;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    read_self(&d);

    printf("host:\n");
    check_shm(&d);
    check_logind(&d);
    check_namespaces(&d);

    if (optind < argc) {
        for (int i = optind; i < argc; i++)
            check_table(&d, tool_table_name(argv[i]), true);
    } else {
        size_t n;
        char **names = scan(&n);
        if (names == NULL) {
            printf("tables:\n");
            say(&d, L_FAIL, "cannot list " TOOL_SHM_DIR ": %s", strerror(errno));
        } else if (n == 0) {
            printf("tables:\n");
            say(&d, L_OK, "no tables in " TOOL_SHM_DIR);
        }
        for (size_t i = 0; names != NULL && i < n; i++) {
            check_table(&d, names[i], false);
            free(names[i]);
        }
        free(names);
    }
    printf("%u failure%s, %u warning%s.\n", d.fails, d.fails == 1 ? "" : "s", d.warns,
           d.warns == 1 ? "" : "s");
    return d.fails > 0 ? DOCTOR_EXIT_FAILED : DOCTOR_EXIT_OK;
}
