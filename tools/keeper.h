/*
 * shmlease acquire / release / check: a lease for part of a shell script,
 * with no descriptor to carry.
 *
 *   tok=$(shmlease acquire --pid $$ KEY) || exit
 *   ...
 *   shmlease release "$tok"
 *
 * A lease belongs to the process that acquired it and is freed when that
 * process dies, so `acquire` cannot hold it itself (it exits to hand the
 * token to the shell). It forks a keeper: a small process that acquires
 * the lease, renews it every third of its TTL, watches the process the
 * lease is tied to through a pidfd and releases the lease when that process
 * ends, and answers `release` and `check` on a control socket. `acquire`
 * prints the token once the keeper holds the lease, and exits.
 *
 * The token: "shmlease:1:KPID:KSTART:FENCING" - format version 1, the
 * keeper's PID and start time (clock ticks since boot: with the PID, one
 * process for the life of the system) and the lease's fencing token. Only
 * [a-z0-9:] characters: safe unquoted in any shell.
 *
 * The control socket: SOCK_SEQPACKET in the abstract namespace, named
 * "shmlease/keeper/KPID/KSTART". Both ends check each other with
 * SO_PEERCRED: the keeper answers only its own user (or root); release
 * talks only to the process the token names (its PID, whose start time it
 * checked), so a process that took the name after the keeper ended cannot
 * answer in its place. One request, one answer, in text:
 *   "RELEASE FENCING GRACE_MS" / "CHECK FENCING"
 *   "OK REMAINING_MS TABLE KEY" / "ERR ERRNAME TABLE KEY"
 * (KEY escaped for a terminal, last because it may hold spaces).
 */
#ifndef SHMLEASE_KEEPER_H
#define SHMLEASE_KEEPER_H

#include <shmlease.h>

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct keeper_token {
    pid_t pid;                    /* the keeper */
    unsigned long long start;     /* its start time */
    uint64_t fencing;             /* the lease's fencing token */
};

#define KEEPER_TOKEN_SIZE 96

/* 0 and *out, or -1 when S is not a token of this format. */
int keeper_token_parse(const char *s, struct keeper_token *out);
void keeper_token_format(const struct keeper_token *k, char buf[KEEPER_TOKEN_SIZE]);

struct keeper {
    pid_t watched;                /* the process the lease is tied to */
    int pidfd;                    /* a pidfd of it */
    int report_fd;                /* keeper: where the outcome goes to acquire */
    int sfd;                      /* keeper: signalfd */
    sigset_t oldmask;
    bool verbose;
};

/*
 * In `acquire`: ties the lease to PID (0: our parent), which must exist,
 * and forks the keeper. Returns -1 in the keeper, which goes on to acquire;
 * in `acquire`, the exit status once the keeper has reported (the token is
 * then on stdout), or died, or a signal came (then the keeper is told to
 * give up and `acquire` dies of the signal).
 */
int keeper_start(struct keeper *k, pid_t pid, bool verbose);

/* In the keeper, while it waits for the lease: the descriptors whose events
 * end the wait (the tied process ended; `acquire` is gone). Fills fds[2]. */
void keeper_wait_fds(const struct keeper *k, struct pollfd fds[2]);

/* In the keeper: hands exit status CODE (not 0) to `acquire`, and exits. */
_Noreturn void keeper_fail(struct keeper *k, int code);

/*
 * In the keeper, once LEASE is held on T: listens on the control socket,
 * hands the token to `acquire`, detaches from its output, and keeps the
 * lease until a release, the end of the tied process, or SIGTERM (or any
 * other signal run_block_signals reads, but SIGCHLD). Exits.
 */
_Noreturn void keeper_serve(struct keeper *k, shmlease_table *t, shmlease_lease *lease,
                            const char *table, const char *key, uint64_t ttl_ms);

/* `release TOKEN` (check false) or `check TOKEN`: asks the keeper, waits for
 * its answer, says what happened. Returns the exit status. */
int keeper_request(const char *token, bool check, uint64_t grace_ms, bool verbose);

#endif
