/*
 * Processes as the tools see them through /proc: a process's identity, its
 * parent, group, state and command name; the descendants of a process; and
 * signals that can never reach a stranger who reused a PID.
 *
 * Identity: a PID alone may name another process once the first has ended
 * and been reaped. A PID together with the process's start time (field 22
 * of /proc/PID/stat, clock ticks since boot) names one process for the life
 * of the system: the kernel does not hand out one PID twice within a tick.
 */
#ifndef SHMLEASE_PROCTREE_H
#define SHMLEASE_PROCTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PROC_COMM_MAX 64   /* bytes of a command name kept, with the NUL */

struct proc_info {
    pid_t pid;
    pid_t ppid;
    pid_t pgrp;
    char state;                   /* R, S, D, T, t, Z, X, I ... as /proc says */
    unsigned long long start;     /* start time, clock ticks since boot */
    char comm[PROC_COMM_MAX];     /* command name, as the kernel keeps it */
};

/* Reads /proc/PID/stat. 0, or -ENOENT when there is no such process (or
 * -errno of the read, -EPROTO if the line cannot be parsed). */
int proc_read(pid_t pid, struct proc_info *out);

/* true while the process PID with start time START exists and has not
 * ended (a zombie has ended). */
bool proc_alive(pid_t pid, unsigned long long start);

/* The descendants of ROOT (not ROOT itself), zombies included, found by
 * following parent links through one scan of /proc. *out is malloc'ed (free
 * it), *n its length. 0 or -errno. A process forked during the scan may be
 * missed: callers that must find every one scan again until none is left. */
int proc_descendants(pid_t root, struct proc_info **out, size_t *n);

/* Sends SIG to the process P names, through a pidfd opened after checking
 * that P's PID still belongs to the process with P's start time. 0, -ESRCH
 * (it has ended, or its PID is another process's now), -EPERM (not ours to
 * signal: another user's), or another -errno. */
int proc_signal(const struct proc_info *p, int sig);

/* PID's command line, its words joined by spaces, cut to fit SIZE (with
 * the NUL). Returns its length, or -errno (-ENOENT: no such process). */
int proc_cmdline(pid_t pid, char *buf, size_t size);

/* pidfd_open(2): a descriptor that becomes readable when PID ends. -errno
 * on failure. */
int proc_pidfd_open(pid_t pid);

/* "uninterruptible sleep (D)", "stopped (T)" ...: the state for a message. */
const char *proc_state_text(char state);

/* "sleep (pid 123)", with the command name escaped for a terminal, into buf. */
#define PROC_NAME_SIZE (4 * PROC_COMM_MAX + 32)
const char *proc_name(const struct proc_info *p, char buf[PROC_NAME_SIZE]);

#endif
