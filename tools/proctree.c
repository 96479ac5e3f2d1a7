#include "proctree.h"

#include "tool-util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int proc_read(pid_t pid, struct proc_info *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? -ENOENT : -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return e == ESRCH ? -ENOENT : -e;
    buf[n] = '\0';
    /* "PID (COMM) S PPID PGRP ...": COMM may hold spaces and parentheses,
     * so it ends at the last ')'. */
    char *open_paren = strchr(buf, '(');
    char *close_paren = strrchr(buf, ')');
    if (open_paren == NULL || close_paren == NULL || close_paren < open_paren)
        return -EPROTO;
    size_t clen = (size_t)(close_paren - open_paren - 1);
    if (clen >= PROC_COMM_MAX)
        clen = PROC_COMM_MAX - 1;
    memcpy(out->comm, open_paren + 1, clen);
    out->comm[clen] = '\0';
    /* Fields 3 (state), 4 (ppid), 5 (pgrp), ... 22 (start time), each
     * after one space (a few are negative: strtoull takes the sign). */
    const char *f = close_paren + 1;
    unsigned long long v[22] = { 0 };
    char state = '?';
    for (int field = 3; field <= 22; field++) {
        if (*f != ' ')
            return -EPROTO;
        f++;
        if (field == 3) {
            state = *f++;
            continue;
        }
        char *end;
        errno = 0;
        v[field - 1] = strtoull(f, &end, 10);
        if (end == f || errno != 0)
            return -EPROTO;
        f = end;
    }
    long ppid = (long)v[3], pgrp = (long)v[4];
    unsigned long long start = v[21];
    out->pid = pid;
    out->ppid = (pid_t)ppid;
    out->pgrp = (pid_t)pgrp;
    out->state = state;
    out->start = start;
    return 0;
}

bool proc_alive(pid_t pid, unsigned long long start)
{
    struct proc_info p = { 0 };
    return proc_read(pid, &p) == 0 && p.start == start && p.state != 'Z' && p.state != 'X';
}

int proc_descendants(pid_t root, struct proc_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -errno;
    struct proc_info *all = NULL;
    size_t nall = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        long pid = strtol(de->d_name, NULL, 10);
        if (pid <= 0 || pid == root)
            continue;
        if (nall == cap) {
            size_t ncap = cap ? 2 * cap : 256;
            struct proc_info *na = realloc(all, ncap * sizeof(*na));
            if (na == NULL) {
                rc = -ENOMEM;
                break;
            }
            all = na;
            cap = ncap;
        }
        if (proc_read((pid_t)pid, &all[nall]) == 0)
            nall++;              /* a process that ended meanwhile is skipped */
    }
    closedir(d);
    if (rc != 0) {
        free(all);
        return rc;
    }
    /* Moves every process whose parent is ROOT or already moved to the front,
     * until a pass moves none: the front is then the descendants. */
    size_t ndesc = 0;
    bool moved = true;
    while (moved) {
        moved = false;
        for (size_t i = ndesc; i < nall; i++) {
            bool child = all[i].ppid == root;
            for (size_t j = 0; j < ndesc && !child; j++)
                child = all[i].ppid == all[j].pid;
            if (child) {
                struct proc_info tmp = all[ndesc];
                all[ndesc++] = all[i];
                all[i] = tmp;
                moved = true;
            }
        }
    }
    *out = all;
    *n = ndesc;
    return 0;
}

int proc_cmdline(pid_t pid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? -ENOENT : -errno;
    ssize_t n = read(fd, buf, size - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return e == ESRCH ? -ENOENT : -e;
    while (n > 0 && buf[n - 1] == '\0')
        n--;                                 /* the last word's NUL */
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    return (int)n;
}

int proc_pidfd_open(pid_t pid)
{
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

int proc_signal(const struct proc_info *p, int sig)
{
    int fd = proc_pidfd_open(p->pid);
    if (fd < 0)
        return fd == -ESRCH || fd == -EINVAL ? -ESRCH : fd;
    /* The pidfd names whoever had the PID when it was opened. P was alive
     * before that and is alive after it (same start time): it had the PID
     * all along, so the pidfd names P. */
    int rc = 0;
    if (!proc_alive(p->pid, p->start))
        rc = -ESRCH;
    else if (syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

const char *proc_state_text(char state)
{
    switch (state) {
    case 'R': return "running (R)";
    case 'S': return "sleeping (S)";
    case 'D': return "in uninterruptible sleep (D)";
    case 'T': return "stopped (T)";
    case 't': return "stopped by a debugger (t)";
    case 'Z': return "a zombie (Z)";
    case 'X': return "dead (X)";
    case 'I': return "idle (I)";
    default:  return "in an unknown state";
    }
}

const char *proc_name(const struct proc_info *p, char buf[PROC_NAME_SIZE])
{
    char comm[4 * PROC_COMM_MAX + 1];
    tool_escape_text(p->comm, strlen(p->comm), comm);
    snprintf(buf, PROC_NAME_SIZE, "%s (pid %ld)", comm, (long)p->pid);
    return buf;
}
