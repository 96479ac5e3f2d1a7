/*
 * shmlease-dump: who a holder is, beside its PID: its command name, user,
 * cgroup and systemd unit, read from /proc/PID.
 *
 * A PID alone can name another process once the holder has exited, so
 * nothing is shown for a dead holder, nor for one of another PID namespace
 * (its PID means nothing here); for the others /proc/PID/stat must give the
 * start time the table recorded for the holder (the library's proof against
 * PID reuse), else the process is not the holder and nothing is shown.
 *
 * A table has at most 4095 holders (one per registry slot) but may hold
 * 100,000 leases: descriptions are cached by registry slot, and a slot's
 * entry is read again only when its PID or start time changes.
 */
#include "dump.h"

#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROC_SLOTS 4096u

static struct proc_desc cache[PROC_SLOTS];
static bool cache_used[PROC_SLOTS];

/* Reads up to SIZE-1 bytes of PATH, NUL-terminated; the length, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n + 1 < size) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Field 22 (starttime) of /proc/PID/stat, after the command in parentheses
 * (which may itself hold ')' and spaces); 0 if unreadable. */
static uint64_t proc_start_time(int32_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_small(path, buf, sizeof(buf)) <= 0)
        return 0;
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    p++;
    /* Fields 3.. follow; starttime is the 20th of them. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return 0;
    }
    return strtoull(p + 1, NULL, 10);
}

/* Is component C (LEN bytes) of a cgroup path a unit name of one of the
 * kinds a process can live in? Slices hold units, they are not one. */
static bool is_unit(const char *c, size_t len, bool *slice)
{
    static const char *const kinds[] = { ".service", ".scope", ".socket", ".mount",
                                         ".swap", ".slice" };
    *slice = false;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t k = strlen(kinds[i]);
        if (len > k && memcmp(c + len - k, kinds[i], k) == 0) {
            *slice = i + 1 == sizeof(kinds) / sizeof(kinds[0]);
            return true;
        }
    }
    return false;
}

/* The first unit under the slices at the start of PATH ("/system.slice/
 * cron.service/..." gives cron.service); *rest: what follows it. False if
 * the path holds no unit there (the root cgroup, a container's own tree). */
static bool first_unit(const char *path, char *unit, size_t size, const char **rest)
{
    const char *p = path;
    for (;;) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            return false;
        size_t len = strcspn(p, "/");
        bool slice;
        if (!is_unit(p, len, &slice))
            return false;
        if (!slice) {
            if (len >= size)
                return false;
            memcpy(unit, p, len);
            unit[len] = '\0';
            *rest = p + len;
            return true;
        }
        p += len;
    }
}

/* S[0..N) and its escaped text, both malloc'd (NULL, NULL when memory runs
 * out: shown as unknown). */
static void keep_text(const char *s, size_t n, struct proc_text *t)
{
    t->raw = strndup(s, n);
    t->text = malloc(4 * n + 1);
    if (t->raw == NULL || t->text == NULL) {
        free(t->raw);
        free(t->text);
        t->raw = t->text = NULL;
        return;
    }
    tool_escape_text(s, n, t->text);
}

static void drop_text(struct proc_text *t)
{
    free(t->raw);
    free(t->text);
    t->raw = t->text = NULL;
}

/* UNIT and UUNIT as systemd names them (what ps -o unit,uunit shows): the
 * system unit, and for a process of a user's service manager
 * (user@UID.service) the user's unit inside it. */
static void units_of(const char *cgroup, struct proc_desc *d)
{
    char unit[256];
    const char *rest;
    if (!first_unit(cgroup, unit, sizeof(unit), &rest))
        return;
    keep_text(unit, strlen(unit), &d->unit);
    if (strncmp(unit, "user@", 5) == 0 && first_unit(rest, unit, sizeof(unit), &rest))
        keep_text(unit, strlen(unit), &d->uunit);
}

/* The process's cgroup: the unified hierarchy's ("0::PATH"), or on a
 * cgroup v1 host the path in systemd's named hierarchy. */
static void cgroup_of(int32_t pid, struct proc_desc *d)
{
    char path[64], buf[8192];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    if (read_small(path, buf, sizeof(buf)) <= 0)
        return;
    const char *v2 = NULL, *v1 = NULL;
    size_t v2len = 0, v1len = 0;
    for (char *line = buf; *line != '\0';) {
        size_t len = strcspn(line, "\n");
        if (strncmp(line, "0::", 3) == 0) {
            v2 = line + 3;
            v2len = len - 3;
        } else {
            const char *n = strstr(line, ":name=systemd:");
            if (n != NULL && n < line + len) {
                v1 = n + strlen(":name=systemd:");
                v1len = len - (size_t)(v1 - line);
            }
        }
        line += len + (line[len] == '\n');
    }
    /* A hybrid host has both; the unified path is "/" there. */
    if (v2 != NULL && !(v1 != NULL && v2len == 1 && v1len > 1))
        keep_text(v2, v2len, &d->cgroup);
    else if (v1 != NULL)
        keep_text(v1, v1len, &d->cgroup);
    if (d->cgroup.raw != NULL)
        units_of(d->cgroup.raw, d);
}

/* The effective user of the process ("Uid:" line of /proc/PID/status). */
static void user_of(int32_t pid, struct proc_desc *d)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (read_small(path, buf, sizeof(buf)) <= 0)
        return;
    const char *u = strstr(buf, "\nUid:");
    unsigned long real, eff;
    if (u == NULL || sscanf(u + 5, "%lu %lu", &real, &eff) != 2)
        return;
    d->uid = (uint32_t)eff;
    d->have_uid = true;
    struct passwd *pw = getpwuid((uid_t)eff);
    if (pw != NULL)
        snprintf(d->user, sizeof(d->user), "%s", pw->pw_name);
    else
        snprintf(d->user, sizeof(d->user), "%lu", eff);
}

static void forget(struct proc_desc *d)
{
    drop_text(&d->cgroup);
    drop_text(&d->unit);
    drop_text(&d->uunit);
    memset(d, 0, sizeof(*d));
}

/* Fills *d for the holder of IN; d->found false if /proc/PID is not the
 * holder or cannot be read. d->pid and d->start are set either way: the
 * answer is kept for every lease of that holder. */
static void describe(const shmlease_info *in, struct proc_desc *d)
{
    forget(d);
    d->pid = in->holder_pid;
    d->start = in->holder_start_time;
    /* The start time first: /proc/PID must be the holder throughout. */
    uint64_t st = proc_start_time(in->holder_pid);
    if (st == 0 || (in->holder_start_time != 0 && st != in->holder_start_time))
        return;
    char path[64], comm[64];
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)in->holder_pid);
    ssize_t n = read_small(path, comm, sizeof(comm));
    if (n <= 0)
        return;
    if (comm[n - 1] == '\n')
        n--;
    if ((size_t)n > sizeof(d->comm_raw))
        n = (ssize_t)sizeof(d->comm_raw);
    memcpy(d->comm_raw, comm, (size_t)n);
    d->comm_len = (uint8_t)n;
    tool_escape_text(d->comm_raw, d->comm_len, d->comm);
    user_of(in->holder_pid, d);
    cgroup_of(in->holder_pid, d);
    /* Read again: the holder may have exited while we read, and its PID
     * been given to another process. */
    if (proc_start_time(in->holder_pid) != st) {
        forget(d);
        d->pid = in->holder_pid;
        d->start = in->holder_start_time;
        return;
    }
    d->found = true;
}

const struct proc_desc *proc_describe(const shmlease_info *in)
{
    if (in->in_grace || in->holder_pid <= 0 || in->holder_other_pidns ||
        in->holder_alive == 0)
        return NULL;
    uint32_t slot = in->holder_handle % PROC_SLOTS;
    struct proc_desc *d = &cache[slot];
    if (!cache_used[slot] || d->pid != in->holder_pid || d->start != in->holder_start_time) {
        describe(in, d);
        cache_used[slot] = true;
    }
    return d->found ? d : NULL;
}

const char *proc_cell(enum col_id c, const shmlease_info *in)
{
    if (in->in_grace || in->holder_pid == 0)
        return "-";
    const struct proc_desc *d = proc_describe(in);
    if (d == NULL)
        return in->holder_alive == 0 ? "-" : "?";
    switch (c) {
    case COL_COMMAND: return d->comm;
    case COL_USER:    return d->have_uid ? d->user : "?";
    case COL_CGROUP:  return d->cgroup.text != NULL ? d->cgroup.text : "?";
    case COL_UNIT:    return d->unit.text != NULL ? d->unit.text : "-";
    case COL_UUNIT:   return d->uunit.text != NULL ? d->uunit.text : "-";
    default:          return "";
    }
}

void proc_cache_clear(void)
{
    for (size_t i = 0; i < PROC_SLOTS; i++)
        if (cache_used[i]) {          /* the others were never touched */
            forget(&cache[i]);
            cache_used[i] = false;
        }
}
