/*
 * shmlease run: what the command line asked for, and the supervisor that
 * runs the command under the lease (run-supervise.c).
 */
#ifndef SHMLEASE_RUN_H
#define SHMLEASE_RUN_H

#include "tool-util.h"

#include <shmlease.h>

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define RUN_EXIT_CANNOT_EXEC  126
#define RUN_EXIT_NOT_FOUND    127

/* The shortest TTL run and acquire accept. The lease is renewed every third
 * of its TTL by a process that the scheduler may keep waiting for some
 * milliseconds on a busy host; below this, ordinary delays lose it. */
#define RUN_MIN_TTL_MS        100u
/* After SIGKILL, how long the supervisor waits at least for the command's
 * processes to end before it names those it could not stop and exits. */
#define RUN_MIN_GIVE_UP_MS    5000u

struct run_opts {
    struct table_choice tc;    /* -t, --share, --create */
    const char *table;         /* the table's name, once chosen */
    const char *key;
    char **cmd;                /* COMMAND [ARGS...], or the sh -c words of -c */
    const char *shell_command; /* -c COMMAND */
    char *sh_argv[4];          /* "sh", "-c", shell_command, NULL */
    int64_t wait_ms;
    uint64_t ttl_ms;
    uint64_t grace_ms;
    uint64_t kill_after_ms;
    const char *metadata;
    int conflict_code;
    int lost_code;
    bool verbose;
    bool close_early;          /* -o: release when COMMAND ends, leave what it started */
    struct lease_mode lm;      /* -s, -x, --limit */
};

/*
 * Blocks the signals the supervisor reads (the forwarded ones that are not
 * ignored, and SIGCHLD) and returns a signalfd reading them, or -errno.
 * *oldmask gets the mask to restore in the command. Called before the table
 * is opened, so that every thread made afterwards has them blocked.
 */
int run_block_signals(sigset_t *oldmask);

/*
 * Runs o->cmd under LEASE (held on T) until the command and every process
 * it started have ended: renews the lease, forwards signals, stops the
 * whole process tree if the lease is lost, releases the lease at the end.
 * Returns the exit status for run. Does not close T.
 */
int run_supervise(const struct run_opts *o, shmlease_table *t, shmlease_lease *lease,
                  const char *key_shown, int sfd, const sigset_t *oldmask);

#endif
