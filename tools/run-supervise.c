/*
 * shmlease run: the supervisor, from the moment the lease is held.
 *
 * Signals. The forwarded signals (those not ignored when we started) and
 * SIGCHLD are blocked before the table is opened and read from a signalfd,
 * so that none is lost or handled half-way: no signal handler at all. The
 * command gets the original mask back before exec.
 *
 * The process tree. The command runs in a process group of its own (unless
 * shmlease has a controlling terminal: there it stays in shmlease's group,
 * the terminal's job, so that it can read the terminal and get ^C and ^Z as
 * any foreground job), and shmlease is the subreaper of everything it
 * starts (PR_SET_CHILD_SUBREAPER): a process whose parent dies, a daemon
 * that double-forked and called setsid(), is re-parented to shmlease, not
 * to init. So "no child left" (waitpid's ECHILD) means that the command and
 * every process it started have ended, and the descendants of shmlease
 * found in /proc are exactly what the command started and is still running.
 *
 * The loop. poll(signalfd, tick); each turn reaps every child that ended,
 * renews the lease when a third of the TTL has passed and otherwise checks
 * it (a broken lease is noticed within one tick: <= ttl/3, <= 1 s).
 *   - The lease is lost: every process of the tree gets SIGTERM (and
 *     SIGCONT, so that a stopped one can act on it), again for any that
 *     appears later; after --kill-after, SIGKILL until none is left. Those
 *     still there RUN_MIN_GIVE_UP_MS (or --kill-after) after the SIGKILL, or
 *     that we may not signal (another user's), are named, and we exit.
 *   - The command ends while the lease is held: if it left processes
 *     running, the lease stays held (and renewed) until they end, as an
 *     flock(1) lock stays held by the children that inherited its
 *     descriptor; -o (--close) releases at once and leaves them running.
 *   - A forwarded signal goes to the command's process group (to the
 *     command's processes in shmlease's group when it shares it), and once
 *     the command has ended, to every process it left running.
 * The command also gets PR_SET_PDEATHSIG=SIGTERM: if this supervisor is
 * killed, its lease is free for the next acquirer at once (dead holder).
 * exec failures travel back through a close-on-exec pipe (126/127).
 */
#include "run.h"

#include "proctree.h"
#include "tool-util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "shmlease"

#define MAX_TICK_MS    1000u
#define STOP_TICK_MS   100u    /* how often the tree is scanned again while stopping it */
#define NAMES_SHOWN    8       /* processes named in one message, at most */

/* Forwarded signals; SIGCHLD is read from the same signalfd. */
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

enum stop_phase { STOP_NONE, STOP_TERM, STOP_KILL };

struct proc_id {
    pid_t pid;
    unsigned long long start;
};

/* A set of processes (by identity), to signal each one once. */
struct proc_set {
    struct proc_id *v;
    size_t n, cap;
};

static bool set_has(const struct proc_set *s, const struct proc_info *p)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].pid == p->pid && s->v[i].start == p->start)
            return true;
    return false;
}

static void set_add(struct proc_set *s, const struct proc_info *p)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? 2 * s->cap : 16;
        struct proc_id *nv = realloc(s->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return;                /* then it may be signalled twice: harmless */
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->n++] = (struct proc_id){ p->pid, p->start };
}

/* Everything the supervisor of one "run" knows, from the acquisition on. */
struct run_state {
    const struct run_opts *o;
    const char *key_shown;        /* o->key escaped for messages */
    shmlease_table *t;
    shmlease_lease *lease;
    const sigset_t *oldmask;      /* the mask the command gets back */
    int sfd;                      /* signalfd: forwarded signals and SIGCHLD */
    pid_t self;
    pid_t pid;                    /* the command */
    pid_t pgid;                   /* the command's own process group; 0: it shares ours */
    int exec_errno;               /* why exec failed; 0 when it succeeded */
    int status;                   /* the command's wait status */
    bool command_ended;
    bool tree_empty;              /* no child left: everything the command started ended */
    uint64_t renew_every;         /* ms: a third of the TTL */
    uint64_t tick;                /* ms: the longest sleep while the lease is held */
    bool unreachable;             /* the last renew or check could not reach the server */
    uint64_t next_renew;          /* table clock, ms */
    bool lost;                    /* the lease is gone: the tree is being stopped */
    enum stop_phase stop;
    uint64_t kill_at;             /* table clock, ms: SIGKILL is due */
    uint64_t give_up_at;          /* table clock, ms: stop waiting for the tree */
    bool gave_up;
    bool leftovers_said;
    struct proc_set termed;       /* got SIGTERM already */
    struct proc_set refused;      /* refused a signal (EPERM): said once */
};

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static const char *sig_name(int sig, char buf[16])
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev != NULL)
        snprintf(buf, 16, "SIG%s", abbrev);
    else
        snprintf(buf, 16, "signal %d", sig);
    return buf;
}

int run_block_signals(sigset_t *oldmask)
{
    sigset_t mask;
    sigemptyset(&mask);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
        /* A signal ignored by whoever started us stays ignored (nohup's
         * SIGHUP, a background job's SIGINT): the command inherits that too.
         * A blocked signal is never discarded, even when ignored, so it must
         * not be blocked to stay ignored. */
        struct sigaction sa;
        if (sigaction(forwarded[i], NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            continue;
        sigaddset(&mask, forwarded[i]);
    }
    sigaddset(&mask, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &mask, oldmask) != 0)
        return -errno;
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    return sfd < 0 ? -errno : sfd;
}

static int status_to_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return TOOL_EX_OSERR;
}

/* A controlling terminal makes shmlease part of a terminal job: the command
 * stays in that job's process group (see the top of this file). */
static bool has_controlling_terminal(void)
{
    int fd = open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Puts the lease's token, key and table in the environment the command
 * inherits; makes the pipe that carries an exec failure back. 0, or -1
 * with errno set. */
static int prepare_spawn(struct run_state *s, int errpipe[2])
{
    char token[32];
    snprintf(token, sizeof(token), "%llu", (unsigned long long)s->lease->fencing_token);
    if (pipe2(errpipe, O_CLOEXEC) != 0 ||
        setenv("SHMLEASE_FENCING_TOKEN", token, 1) != 0 ||
        setenv("SHMLEASE_KEY", s->o->key, 1) != 0 ||
        setenv("SHMLEASE_TABLE", s->o->table, 1) != 0)
        return -1;
    /* The table is named by its name and where it lives: the command's own
     * shmlease tools find it again. */
    if (s->o->tc.bc.url != NULL ? setenv(TOOL_BACKEND_ENV, s->o->tc.bc.url, 1) != 0
                                : unsetenv(TOOL_BACKEND_ENV) != 0)
        return -1;
    return 0;
}

/* In the child after fork(): async-signal-safe calls only until exec. Dies
 * with SIGTERM when the supervisor dies; reports an exec failure's errno
 * on errpipe and exits as a shell would (127 not found, 126 otherwise). */
static _Noreturn void exec_command(const struct run_state *s, pid_t parent, bool own_group,
                                   int errpipe[2])
{
    close(errpipe[0]);
    if (own_group)
        setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(TOOL_EX_OSERR);          /* the supervisor is already gone */
    sigprocmask(SIG_SETMASK, s->oldmask, NULL);
    execvp(s->o->cmd[0], s->o->cmd);
    int e = errno;
    ssize_t w = write(errpipe[1], &e, sizeof(e));
    (void)w;
    _exit(e == ENOENT ? RUN_EXIT_NOT_FOUND : RUN_EXIT_CANNOT_EXEC);
}

/* In the parent: waits for the child's exec (EOF on the close-on-exec pipe)
 * or for the errno of its failure. */
static int read_exec_errno(int errpipe[2])
{
    close(errpipe[1]);
    int exec_errno = 0;
    ssize_t got;
    do
        got = read(errpipe[0], &exec_errno, sizeof(exec_errno));
    while (got < 0 && errno == EINTR);
    close(errpipe[0]);
    if (got != (ssize_t)sizeof(exec_errno))
        exec_errno = 0;                    /* EOF: exec succeeded */
    return exec_errno;
}

/* Starts the command as a child, in a process group of its own unless we
 * have a controlling terminal, with us as the subreaper of all it starts.
 * 0 when it runs (or its exec failed: s->exec_errno says), else -1. */
static int spawn_command(struct run_state *s)
{
    int errpipe[2] = { -1, -1 };
    if (prepare_spawn(s, errpipe) != 0) {
        fprintf(stderr, PROG ": %s\n", strerror(errno));
        return -1;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        fprintf(stderr, PROG ": cannot become the subreaper of the command "
                        "(PR_SET_CHILD_SUBREAPER): %s\n", strerror(errno));
        return -1;
    }
    bool own_group = !has_controlling_terminal();
    s->self = getpid();
    s->pid = fork();
    if (s->pid < 0) {
        fprintf(stderr, PROG ": fork: %s\n", strerror(errno));
        return -1;
    }
    if (s->pid == 0)
        exec_command(s, s->self, own_group, errpipe);
    if (own_group) {
        setpgid(s->pid, s->pid);         /* as the child does: whoever is first */
        s->pgid = s->pid;
    }
    s->exec_errno = read_exec_errno(errpipe);
    return 0;
}

/* Reaps every child that has ended: the command (its status is kept) and
 * the processes re-parented to us. Notes when no child is left. */
static void reap_children(struct run_state *s)
{
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r > 0) {
            if (r == s->pid) {
                s->status = st;
                s->command_ended = true;
            }
            continue;
        }
        if (r == 0)
            return;
        if (errno == EINTR)
            continue;
        if (errno != ECHILD) {
            fprintf(stderr, PROG ": waitpid: %s\n", strerror(errno));
            if (!s->command_ended)
                s->status = TOOL_EX_OSERR << 8;
        }
        s->tree_empty = true;
        s->command_ended = true;
        return;
    }
}

/* The live (not zombie) processes the command started, the command included. */
static size_t live_tree(struct run_state *s, struct proc_info **out)
{
    struct proc_info *all;
    size_t n = 0, live = 0;
    if (proc_descendants(s->self, &all, &n) != 0) {
        *out = NULL;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (all[i].state != 'Z' && all[i].state != 'X')
            all[live++] = all[i];
    *out = all;
    return live;
}

/* "sh (pid 1), sleep (pid 2) and 3 more" into buf. */
static void list_names(const struct proc_info *v, size_t n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && i < NAMES_SHOWN; i++) {
        char name[PROC_NAME_SIZE];
        int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", proc_name(&v[i], name));
        if (w < 0 || (size_t)w >= size - used)
            return;
        used += (size_t)w;
    }
    if (n > NAMES_SHOWN)
        snprintf(buf + used, size - used, " and %zu more", n - NAMES_SHOWN);
}

/* Tells once about a process we may not signal. */
static void say_refused(struct run_state *s, const struct proc_info *p, int sig, int rc)
{
    if (set_has(&s->refused, p))
        return;
    set_add(&s->refused, p);
    char name[PROC_NAME_SIZE], sn[16];
    fprintf(stderr, PROG ": cannot send %s to %s: %s\n", sig_name(sig, sn), proc_name(p, name),
            rc == -EPERM ? "it runs as another user (EPERM)" : strerror(-rc));
}

/* Sends SIG to every live process of the tree (with SIGTERM: those that did
 * not get it yet, each followed by SIGCONT). Returns how many got it; *v
 * and *n: the processes found (free *v). */
static size_t signal_tree(struct run_state *s, int sig, struct proc_info **v, size_t *n)
{
    size_t sent = 0;
    *n = live_tree(s, v);
    /* The group also reaches a process forked after the scan. Its number
     * is the command's PID, which cannot be reused until we reap it. */
    if (sig == SIGKILL && s->pgid != 0 && !s->command_ended)
        kill(-s->pgid, SIGKILL);
    for (size_t i = 0; i < *n; i++) {
        struct proc_info *p = &(*v)[i];
        if (sig == SIGTERM && set_has(&s->termed, p))
            continue;
        int rc = proc_signal(p, sig);
        if (rc == 0 && sig == SIGTERM) {
            set_add(&s->termed, p);
            proc_signal(p, SIGCONT);     /* a stopped process must run to act on it */
        }
        if (rc == 0)
            sent++;
        else if (rc != -ESRCH)
            say_refused(s, p, sig, rc);
    }
    return sent;
}

/* The lease is lost: SIGTERM to the whole tree, SIGKILL scheduled. */
static void start_stop(struct run_state *s, uint64_t now, int rc)
{
    const struct run_opts *o = s->o;
    s->lost = true;
    s->stop = STOP_TERM;
    s->kill_at = now + o->kill_after_ms;
    struct proc_info *v;
    size_t n;
    signal_tree(s, SIGTERM, &v, &n);
    char names[1024];
    list_names(v, n, names, sizeof(names));
    fprintf(stderr,
            PROG ": lease %s on table %s lost (%s: %s): it was broken, or this process was "
            "paused past its TTL; sending SIGTERM to %s%s%s\n",
            s->key_shown, o->table, shmlease_errname(rc),
            rc == -ESTALE ? "no longer the current claim" : shmlease_strerror(rc),
            s->command_ended ? "what the command left running: " : "the command's processes: ",
            names, n == 0 ? "(none left)" : "");
    free(v);
}

/* Renews the lease when it is due, checks it otherwise; starts stopping the
 * tree once it is lost. */
static void keep_lease(struct run_state *s, uint64_t now)
{
    int rc;
    if (now >= s->next_renew) {
        rc = shmlease_renew(s->t, s->lease, s->o->ttl_ms);
        if (rc == 0)
            s->next_renew = now + s->renew_every;
    } else {
        rc = shmlease_check(s->t, s->lease);
    }
    if (tool_connection_error(rc)) {
        /* A Redis server out of reach: the lease may still be held, and the
         * library says -ESTALE once its deadline has passed unconfirmed.
         * Try again soon (each call waits its own bounded time). */
        if (!s->unreachable)
            fprintf(stderr, PROG ": lease %s on table %s: cannot reach the Redis server "
                            "(%s: %s); trying again until the lease's deadline\n",
                    s->key_shown, s->o->table, shmlease_errname(rc), shmlease_strerror(rc));
        s->unreachable = true;
        uint64_t again = s->tick / 4 > 10 ? s->tick / 4 : 10;
        if (s->next_renew < now + again)
            s->next_renew = now + again;
        return;
    }
    if (rc == 0 && s->unreachable) {
        fprintf(stderr, PROG ": lease %s on table %s: the Redis server answers again; the "
                        "lease is still held\n", s->key_shown, s->o->table);
        s->unreachable = false;
    }
    if (rc != 0)
        start_stop(s, shmlease_now_ms(s->t), rc);
}

/* After the loss: SIGTERM to newcomers until --kill-after, then SIGKILL
 * until none is left, then, past the give-up time, name the survivors. */
static void stop_tree(struct run_state *s, uint64_t now)
{
    struct proc_info *v = NULL;
    size_t n = 0;
    char names[1024];
    if (s->stop == STOP_TERM && now >= s->kill_at) {
        s->stop = STOP_KILL;
        s->give_up_at = now + (s->o->kill_after_ms > RUN_MIN_GIVE_UP_MS ? s->o->kill_after_ms
                                                                         : RUN_MIN_GIVE_UP_MS);
        n = live_tree(s, &v);
        list_names(v, n, names, sizeof(names));
        if (n > 0)
            fprintf(stderr, PROG ": %zu process%s still running %llums after SIGTERM; "
                            "sending SIGKILL to %s\n",
                    n, n == 1 ? "" : "es", (unsigned long long)s->o->kill_after_ms, names);
        free(v);
        v = NULL;
    }
    if (s->stop == STOP_KILL && now >= s->give_up_at) {
        n = live_tree(s, &v);
        if (n > 0) {
            fprintf(stderr, PROG ": could not stop %zu process%s that the command started; "
                            "exiting while %s:\n", n, n == 1 ? "" : "es",
                    n == 1 ? "it still runs" : "they still run");
            for (size_t i = 0; i < n; i++) {
                char name[PROC_NAME_SIZE];
                fprintf(stderr, PROG ":   %s, %s%s\n", proc_name(&v[i], name),
                        proc_state_text(v[i].state),
                        set_has(&s->refused, &v[i]) ? ", runs as another user (EPERM)" : "");
            }
            s->gave_up = true;
        }
        free(v);
        return;
    }
    signal_tree(s, s->stop == STOP_TERM ? SIGTERM : SIGKILL, &v, &n);
    free(v);
}

/* The command ended while the lease is held and left processes running:
 * says so once (with -v). The lease stays held until they end. */
static void note_leftovers(struct run_state *s)
{
    s->leftovers_said = true;
    if (!s->o->verbose)
        return;
    struct proc_info *v;
    size_t n = live_tree(s, &v);
    if (n > 0) {
        char names[1024];
        list_names(v, n, names, sizeof(names));
        fprintf(stderr, PROG ": %s (pid %ld) exited with %d; the lease on %s stays held until "
                        "the process%s it left running end%s: %s (-o, --close: release at "
                        "once)\n",
                s->o->cmd[0], (long)s->pid, status_to_code(s->status), s->key_shown,
                n == 1 ? "" : "es", n == 1 ? "s" : "", names);
    }
    free(v);
}

/* Sleeps until a signal comes or the next renewal, check or stop step is due. */
static void wait_for_event(struct run_state *s, uint64_t now)
{
    uint64_t wait_for;
    if (!s->lost)
        wait_for = min_u64(s->next_renew > now ? s->next_renew - now : 0, s->tick);
    else if (s->stop == STOP_TERM)
        wait_for = min_u64(s->kill_at > now ? s->kill_at - now : 0, STOP_TICK_MS);
    else
        wait_for = min_u64(s->give_up_at > now ? s->give_up_at - now : 0, STOP_TICK_MS);
    struct pollfd pfd = { .fd = s->sfd, .events = POLLIN };
    if (poll(&pfd, 1, (int)wait_for) < 0 && errno != EINTR) {
        fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
        if (!s->lost)
            start_stop(s, shmlease_now_ms(s->t), -errno);
    }
}

/* Sends SIG to the command's process group: the group itself when the
 * command has its own, else each process of ours that the command started. */
static void forward_to_group(struct run_state *s, int sig)
{
    if (s->pgid != 0 && !s->command_ended) {
        kill(-s->pgid, sig);
        return;
    }
    struct proc_info *v;
    size_t n = live_tree(s, &v);
    pid_t ours = getpgrp();
    for (size_t i = 0; i < n; i++)
        if (v[i].pgrp == ours) {
            int rc = proc_signal(&v[i], sig);
            if (rc != 0 && rc != -ESRCH)
                say_refused(s, &v[i], sig, rc);
        }
    free(v);
}

/* Passes on every forwarded signal that came; SIGCHLD only wakes the loop. */
static void forward_signals(struct run_state *s)
{
    struct signalfd_siginfo si;
    while (read(s->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;
        char sn[16];
        if (sig == SIGCHLD)
            continue;                  /* reaped at the top of the loop */
        if (s->lost) {
            if (s->o->verbose)
                fprintf(stderr, PROG ": %s ignored: the command's processes are being "
                                "stopped\n", sig_name(sig, sn));
            continue;
        }
        if (!s->command_ended) {
            /* A terminal's ^C / ^\ goes to the whole foreground process group;
             * a command that shares ours has it already. */
            if (s->pgid == 0 && si.ssi_code == SI_KERNEL && (sig == SIGINT || sig == SIGQUIT))
                continue;
            if (s->o->verbose)
                fprintf(stderr, PROG ": forwarding %s to the command's process group "
                                "(pid %ld)\n", sig_name(sig, sn), (long)s->pid);
            forward_to_group(s, sig);
        } else {
            struct proc_info *v;
            size_t n;
            if (s->o->verbose)
                fprintf(stderr, PROG ": forwarding %s to the processes the command left "
                                "running\n", sig_name(sig, sn));
            n = live_tree(s, &v);
            for (size_t i = 0; i < n; i++) {
                int rc = proc_signal(&v[i], sig);
                if (rc != 0 && rc != -ESRCH)
                    say_refused(s, &v[i], sig, rc);
            }
            free(v);
        }
    }
}

/* Runs until the command and all it started have ended (or, with -o, the
 * command alone), keeping the lease and stopping the tree if it is lost. */
static void supervise(struct run_state *s)
{
    s->renew_every = s->o->ttl_ms / 3 ? s->o->ttl_ms / 3 : 1;
    s->tick = min_u64(s->renew_every, MAX_TICK_MS);
    s->next_renew = shmlease_now_ms(s->t) + s->renew_every;
    for (;;) {
        reap_children(s);
        if (s->tree_empty)
            return;
        if (s->command_ended && !s->lost) {
            if (s->o->close_early)
                return;
            if (!s->leftovers_said)
                note_leftovers(s);
        }
        uint64_t now = shmlease_now_ms(s->t);
        if (!s->lost)
            keep_lease(s, now);
        if (s->lost) {
            stop_tree(s, shmlease_now_ms(s->t));
            if (s->gave_up)
                return;
        }
        wait_for_event(s, shmlease_now_ms(s->t));
        forward_signals(s);
    }
}

/* The command's exit status as a shell reports it (126/127 when exec failed). */
static int command_exit_code(const struct run_state *s)
{
    int code = status_to_code(s->status);
    if (s->exec_errno != 0) {
        fprintf(stderr, PROG ": %s: %s\n", s->o->cmd[0],
                s->exec_errno == ENOENT ? "command not found" : strerror(s->exec_errno));
        code = s->exec_errno == ENOENT ? RUN_EXIT_NOT_FOUND : RUN_EXIT_CANNOT_EXEC;
    }
    return code;
}

/* With -o: says (with -v) what was left running when the lease was released. */
static void say_left_running(struct run_state *s)
{
    struct proc_info *v;
    size_t n = live_tree(s, &v);
    if (n > 0) {
        char names[1024];
        list_names(v, n, names, sizeof(names));
        fprintf(stderr, PROG ": left running without the lease (--close): %s\n", names);
    }
    free(v);
}

/* Releases the lease (after a grace period with --grace) once the command
 * ended with code. Returns the exit status: code, or the lost code if the
 * lease was lost before the command ended. */
static int finish_run(struct run_state *s, int code)
{
    const struct run_opts *o = s->o;
    if (s->lost) {
        if (s->command_ended)
            fprintf(stderr, PROG ": %s ended with status %d after the lease was lost; "
                            "exiting with %d\n", o->cmd[0], code, o->lost_code);
        else
            fprintf(stderr, PROG ": exiting with %d: the lease was lost\n", o->lost_code);
        return o->lost_code;
    }
    int rc = o->grace_ms > 0 ? shmlease_release_after(s->t, s->lease, o->grace_ms)
                             : shmlease_release(s->t, s->lease);
    if (rc == -ESTALE) {
        /* Lost between the last check and the end: the command (or what it
         * left running) may have run its last moments unprotected. */
        fprintf(stderr, PROG ": lease %s on table %s was lost before %s ended "
                        "(status %d); exiting with %d\n",
                s->key_shown, o->table, o->cmd[0], code, o->lost_code);
        return o->lost_code;
    }
    if (rc != 0)
        fprintf(stderr, PROG ": releasing %s: %s (%s)\n", s->key_shown,
                shmlease_strerror(rc), shmlease_errname(rc));
    else if (o->verbose)
        fprintf(stderr, PROG ": released %s%s; %s exited with %d\n", s->key_shown,
                o->grace_ms ? " with a grace period" : "", o->cmd[0], code);
    if (!s->tree_empty && o->verbose)
        say_left_running(s);
    return code;
}

int run_supervise(const struct run_opts *o, shmlease_table *t, shmlease_lease *lease,
                  const char *key_shown, int sfd, const sigset_t *oldmask)
{
    struct run_state s = { .o = o, .key_shown = key_shown, .t = t, .lease = lease,
                           .oldmask = oldmask, .sfd = sfd };
    if (spawn_command(&s) != 0) {
        shmlease_release(t, lease);
        return TOOL_EX_OSERR;
    }
    supervise(&s);
    int code = finish_run(&s, command_exit_code(&s));
    free(s.termed.v);
    free(s.refused.v);
    return code;
}
