#include "keeper.h"

#include "lease-wait.h"
#include "proctree.h"
#include "run.h"
#include "tool-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "shmlease"

#define EXIT_STALE     1                     /* release/check: no such lease (any more) */
#define TOKEN_PREFIX   "shmlease:1:"
#define ANSWER_WAIT_MS 30000                 /* how long release waits for the keeper */
#define REQUEST_WAIT_MS 5000                 /* how long a connection may stay silent */
#define MAX_CLIENTS    8                     /* connections served at once */

/* What the keeper tells `acquire` once: 0 and the token's parts, or the
 * exit status of a failure (its message is already on stderr). */
struct report {
    int32_t code;
    uint32_t pad;
    uint64_t fencing;
    uint64_t start;
};

/* ---- the token -------------------------------------------------------- */

int keeper_token_parse(const char *s, struct keeper_token *out)
{
    if (strncmp(s, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) != 0)
        return -1;
    s += sizeof(TOKEN_PREFIX) - 1;
    unsigned long long v[3];
    for (int i = 0; i < 3; i++) {
        const char *end = strchr(s, i < 2 ? ':' : '\0');
        char part[24];
        size_t len = end ? (size_t)(end - s) : 0;
        if (end == NULL || len == 0 || len >= sizeof(part))
            return -1;
        memcpy(part, s, len);
        part[len] = '\0';
        if (tool_parse_uint(part, UINT64_MAX, &v[i]) != 0)
            return -1;
        s = end + (i < 2);
    }
    if (v[0] == 0 || v[0] > INT32_MAX || v[2] == 0)
        return -1;
    out->pid = (pid_t)v[0];
    out->start = v[1];
    out->fencing = v[2];
    return 0;
}

void keeper_token_format(const struct keeper_token *k, char buf[KEEPER_TOKEN_SIZE])
{
    snprintf(buf, KEEPER_TOKEN_SIZE, TOKEN_PREFIX "%ld:%llu:%llu", (long)k->pid, k->start,
             (unsigned long long)k->fencing);
}

/* The control socket's abstract address. */
static socklen_t socket_address(pid_t pid, unsigned long long start, struct sockaddr_un *a)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "shmlease/keeper/%ld/%llu",
                     (long)pid, start);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* ---- acquire: start the keeper, wait for its word ------------------------ */

/* Closes every descriptor above 2 but those in keep[] (sorted). */
static void close_others(const int *keep, size_t n)
{
    unsigned lo = 3;
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < (int)lo)
            continue;
        if ((unsigned)keep[i] > lo)
            close_range(lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    close_range(lo, ~0u, 0);
}

static void sort_ints(int *v, size_t n)
{
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            int t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

/* In the keeper, just forked: its own session (no terminal's signals), no
 * working directory held, stdin and stdout on /dev/null (the shell's
 * command substitution ends when acquire exits), no descriptor of the
 * caller's but stderr, which it keeps until it has reported. */
static void keeper_detach_start(struct keeper *k)
{
    setsid();
    if (chdir("/") != 0) {
        /* "/" always exists; nothing to do */
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        close(null);
    }
    int keep[3] = { k->report_fd, k->pidfd, k->sfd };
    sort_ints(keep, 3);
    close_others(keep, 3);
    prctl(PR_SET_NAME, "shmlease-keeper");
}

/* In acquire: the keeper's report, or a signal, or its death. */
static int await_report(struct keeper *k, pid_t keeper, int rfd, int sfd)
{
    struct pollfd pfd[2] = { { .fd = rfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
            kill(keeper, SIGTERM);
            return TOOL_EX_OSERR;
        }
        if (pfd[1].revents != 0) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGCHLD)
                    continue;          /* the keeper's end shows as EOF on rfd */
                /* Told to stop: so is the keeper, which gives up its wait
                 * (releasing a lease won meanwhile); then we die of it. */
                kill(keeper, SIGTERM);
                waitpid(keeper, NULL, 0);
                die_by_signal((int)si.ssi_signo);
            }
        }
        if (pfd[0].revents == 0)
            continue;
        struct report r;
        ssize_t n;
        do
            n = read(rfd, &r, sizeof(r));
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t)sizeof(r)) {
            if (r.code != 0)
                return r.code;
            struct keeper_token tok = { keeper, r.start, r.fencing };
            char buf[KEEPER_TOKEN_SIZE];
            keeper_token_format(&tok, buf);
            printf("%s\n", buf);
            if (fflush(stdout) != 0) {
                fprintf(stderr, PROG ": writing the token: %s; releasing\n", strerror(errno));
                kill(keeper, SIGTERM);
                return TOOL_EX_OSERR;
            }
            if (k->verbose)
                fprintf(stderr, PROG ": keeper pid %ld holds the lease for pid %ld until "
                                "'" PROG " release %s', or until pid %ld ends\n",
                        (long)keeper, (long)k->watched, buf, (long)k->watched);
            return 0;
        }
        int st = 0;
        waitpid(keeper, &st, 0);
        fprintf(stderr, PROG ": the keeper (pid %ld) ended without handing over the lease "
                        "(%s %d)\n", (long)keeper,
                WIFSIGNALED(st) ? "killed by signal" : "exit status",
                WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        return TOOL_EX_OSERR;
    }
}

int keeper_start(struct keeper *k, pid_t pid, bool verbose)
{
    memset(k, 0, sizeof(*k));
    k->verbose = verbose;
    k->pidfd = k->report_fd = k->sfd = -1;
    if (pid == 0) {
        pid = getppid();
        if (pid <= 1) {
            fprintf(stderr, PROG " acquire: the parent process (pid %ld) is not one to tie "
                            "a lease to; name one with --pid\n", (long)pid);
            return TOOL_EX_USAGE;
        }
    }
    struct proc_info p;
    k->watched = pid;
    k->pidfd = proc_pidfd_open(pid);
    if (k->pidfd < 0 || proc_read(pid, &p) != 0 || p.state == 'Z' || p.state == 'X') {
        fprintf(stderr, PROG " acquire: --pid %ld: no such process%s\n", (long)pid,
                k->pidfd == -EINVAL ? " (not a process, or of another PID namespace)" : "");
        return TOOL_EX_USAGE;
    }
    int sfd = run_block_signals(&k->oldmask);
    int rp[2];
    if (sfd < 0 || pipe2(rp, O_CLOEXEC) != 0) {
        fprintf(stderr, PROG ": %s\n", strerror(sfd < 0 ? -sfd : errno));
        return TOOL_EX_OSERR;
    }
    fflush(NULL);
    pid_t keeper = fork();
    if (keeper < 0) {
        fprintf(stderr, PROG ": fork: %s\n", strerror(errno));
        return TOOL_EX_OSERR;
    }
    if (keeper == 0) {
        /* A signalfd reads the signals of the process reading it: the
         * keeper keeps the inherited one (and the inherited mask). */
        close(rp[0]);
        k->report_fd = rp[1];
        k->sfd = sfd;
        signal(SIGPIPE, SIG_IGN);        /* acquire gone: EPIPE, not death */
        keeper_detach_start(k);
        return -1;
    }
    close(rp[1]);
    close(k->pidfd);
    int code = await_report(k, keeper, rp[0], sfd);
    close(rp[0]);
    close(sfd);
    return code;
}

void keeper_wait_fds(const struct keeper *k, struct pollfd fds[2])
{
    fds[0] = (struct pollfd){ .fd = k->pidfd, .events = POLLIN };
    fds[1] = (struct pollfd){ .fd = k->report_fd, .events = 0 };   /* POLLERR: reader gone */
}

static int send_report(struct keeper *k, const struct report *r)
{
    ssize_t n;
    do
        n = write(k->report_fd, r, sizeof(*r));
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof(*r) ? 0 : -1;
}

_Noreturn void keeper_fail(struct keeper *k, int code)
{
    struct report r = { .code = code ? code : TOOL_EX_OSERR };
    send_report(k, &r);
    _exit(r.code);
}

/* Splits S in place at spaces into at most MAX words, the last of which
 * keeps the rest of the line (spaces included). Returns how many. */
static size_t split_words(char *s, char **w, size_t max)
{
    size_t n = 0;
    while (n < max && *s != '\0') {
        w[n++] = s;
        if (n == max)
            break;
        char *sp = strchr(s, ' ');
        if (sp == NULL)
            break;
        *sp = '\0';
        s = sp + 1;
    }
    return n;
}

/* ---- the keeper, holding the lease ------------------------------------- */

struct keeper_state {
    shmlease_table *t;
    shmlease_lease *lease;
    const char *table;
    char key_shown[4 * (SHMLEASE_KEY_MAX + 1) + 1];
    uint64_t ttl_ms;
    bool lost;
};

/* Serves a connection whose request has come: checks who asks, reads the
 * request, answers. Returns true when the lease was released (or found
 * lost) by a RELEASE: the keeper's work is over. */
static bool serve_request(struct keeper_state *ks, int c)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    char req[128], ans[4 * (SHMLEASE_KEY_MAX + 1) + SHMLEASE_NAME_MAX + 64];
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return false;
    ssize_t n = recv(c, req, sizeof(req) - 1, MSG_DONTWAIT);
    if (n <= 0)
        return false;
    req[n] = '\0';
    char *w[4];
    size_t nw = split_words(req, w, 4);
    unsigned long long fencing = 0, grace = 0;
    bool release = nw == 3 && strcmp(w[0], "RELEASE") == 0 &&
                   tool_parse_uint(w[1], UINT64_MAX, &fencing) == 0 &&
                   tool_parse_uint(w[2], UINT64_MAX, &grace) == 0;
    bool check = nw == 2 && strcmp(w[0], "CHECK") == 0 &&
                 tool_parse_uint(w[1], UINT64_MAX, &fencing) == 0;
    int rc = 0;
    if (cr.uid != geteuid() && cr.uid != 0)
        rc = -EPERM;                          /* another user's request */
    else if ((!release && !check) || fencing != ks->lease->fencing_token)
        rc = -EINVAL;                         /* not a request for this lease */
    else if (ks->lost)
        rc = -ESTALE;
    else if (check)
        rc = shmlease_check(ks->t, ks->lease);
    else
        rc = grace > 0 ? shmlease_release_after(ks->t, ks->lease, grace)
                       : shmlease_release(ks->t, ks->lease);
    if (rc == -ESTALE)
        ks->lost = true;
    if (rc == 0) {
        uint64_t now = shmlease_now_ms(ks->t);
        uint64_t exp = release && grace > 0 ? now + grace : ks->lease->expires_at_ms;
        snprintf(ans, sizeof(ans), "OK %llu %s %s",
                 (unsigned long long)(exp > now && !release ? exp - now : 0), ks->table,
                 ks->key_shown);
    } else {
        snprintf(ans, sizeof(ans), "ERR %s %s %s", shmlease_errname(rc), ks->table,
                 ks->key_shown);
    }
    ssize_t sent = send(c, ans, strlen(ans), MSG_NOSIGNAL);
    (void)sent;                               /* a client gone: nothing to tell */
    return release && (rc == 0 || rc == -ESTALE);
}

static int listen_control(struct keeper_token *tok)
{
    struct proc_info self;
    int rc = proc_read(getpid(), &self);
    if (rc != 0)
        return rc;
    tok->pid = self.pid;
    tok->start = self.start;
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -errno;
    struct sockaddr_un a;
    socklen_t alen = socket_address(self.pid, self.start, &a);
    if (bind(s, (struct sockaddr *)&a, alen) != 0 || listen(s, 8) != 0) {
        rc = -errno;
        close(s);
        return rc;
    }
    return s;
}

_Noreturn void keeper_serve(struct keeper *k, shmlease_table *t, shmlease_lease *lease,
                            const char *table, const char *key, uint64_t ttl_ms)
{
    struct keeper_state ks = { .t = t, .lease = lease, .table = table, .ttl_ms = ttl_ms };
    size_t klen = strnlen(key, SHMLEASE_KEY_MAX);
    tool_escape_text(key, klen, ks.key_shown);
    struct keeper_token tok = { .fencing = lease->fencing_token };
    int ls = listen_control(&tok);
    if (ls < 0) {
        fprintf(stderr, PROG ": the keeper cannot open its control socket: %s\n",
                strerror(-ls));
        shmlease_release(t, lease);
        keeper_fail(k, TOOL_EX_OSERR);
    }
    struct report r = { .code = 0, .fencing = tok.fencing, .start = tok.start };
    /* From here on nothing is said: stderr goes to /dev/null with the rest,
     * so that nobody waits on our end of the caller's pipes. */
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 2);
        close(null);
    }
    if (send_report(k, &r) != 0) {
        shmlease_release(t, lease);           /* acquire is gone: nobody has the token */
        _exit(TOOL_EX_OSERR);
    }
    close(k->report_fd);

    /* One loop for everything: the lease's renewal must never wait for a
     * client, so connections are polled here too, each for at most
     * REQUEST_WAIT_MS. */
    uint64_t renew_every = ttl_ms / 3 ? ttl_ms / 3 : 1;
    uint64_t tick = renew_every < 1000 ? renew_every : 1000;
    uint64_t next_renew = shmlease_now_ms(t) + renew_every;
    enum { P_TIED, P_LISTEN, P_SIGNAL, P_CLIENTS };
    struct pollfd pfd[P_CLIENTS + MAX_CLIENTS];
    uint64_t client_until[MAX_CLIENTS] = { 0 };
    pfd[P_TIED] = (struct pollfd){ .fd = k->pidfd, .events = POLLIN };
    pfd[P_LISTEN] = (struct pollfd){ .fd = ls, .events = POLLIN };
    pfd[P_SIGNAL] = (struct pollfd){ .fd = k->sfd, .events = POLLIN };
    for (int i = 0; i < MAX_CLIENTS; i++)
        pfd[P_CLIENTS + i] = (struct pollfd){ .fd = -1, .events = POLLIN };
    for (;;) {
        uint64_t now = shmlease_now_ms(t);
        uint64_t timeout = UINT64_MAX;
        if (!ks.lost) {
            int rc = 0;
            if (now >= next_renew) {
                rc = shmlease_renew(t, lease, ttl_ms);
                next_renew = now + renew_every;
            } else {
                rc = shmlease_check(t, lease);
            }
            if (tool_connection_error(rc)) {
                /* The Redis server is out of reach: the lease may still be
                 * held (-ESTALE once its deadline passed unconfirmed). */
                next_renew = now + (tick / 4 > 10 ? tick / 4 : 10);
                timeout = next_renew - now;
            } else if (rc != 0) {
                ks.lost = true;              /* told to release or check, we say so */
            } else {
                timeout = next_renew - now < tick ? next_renew - now : tick;
            }
        }
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (pfd[P_CLIENTS + i].fd < 0)
                continue;
            if (now >= client_until[i]) {     /* silent too long */
                close(pfd[P_CLIENTS + i].fd);
                pfd[P_CLIENTS + i].fd = -1;
            } else if (client_until[i] - now < timeout) {
                timeout = client_until[i] - now;
            }
        }
        if (poll(pfd, P_CLIENTS + MAX_CLIENTS, timeout == UINT64_MAX ? -1 : (int)timeout) < 0 &&
            errno != EINTR)
            break;
        if (pfd[P_TIED].revents != 0)
            break;                           /* the tied process ended */
        if (pfd[P_SIGNAL].revents != 0) {
            struct signalfd_siginfo si;
            bool stop = false;
            while (read(k->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                stop |= si.ssi_signo != SIGCHLD;
            if (stop)
                break;                       /* SIGTERM and the like: release, end */
        }
        for (int i = 0; i < MAX_CLIENTS; i++) {
            struct pollfd *c = &pfd[P_CLIENTS + i];
            if (c->fd < 0 || c->revents == 0)
                continue;
            bool over = serve_request(&ks, c->fd);
            close(c->fd);
            c->fd = -1;
            if (over) {
                shmlease_close(t);
                _exit(0);
            }
        }
        if (pfd[P_LISTEN].revents != 0) {
            int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            int slot = -1;
            for (int i = 0; i < MAX_CLIENTS && slot < 0 && c >= 0; i++)
                if (pfd[P_CLIENTS + i].fd < 0)
                    slot = i;
            if (slot >= 0) {
                pfd[P_CLIENTS + slot].fd = c;
                client_until[slot] = shmlease_now_ms(t) + REQUEST_WAIT_MS;
            } else if (c >= 0) {
                close(c);                    /* all busy: this one may try again */
            }
        }
    }
    if (!ks.lost)
        shmlease_release(t, lease);
    shmlease_close(t);
    _exit(0);
}

/* ---- release / check: ask the keeper ----------------------------------- */

/* Connects to the keeper TOK names, and checks that it is that process.
 * Returns the socket, or -1 after a message with *code set. */
static int connect_keeper(const struct keeper_token *tok, const char *token, int *code)
{
    struct sockaddr_un a;
    socklen_t alen = socket_address(tok->pid, tok->start, &a);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0) {
        fprintf(stderr, PROG ": socket: %s\n", strerror(errno));
        *code = TOOL_EX_OSERR;
        return -1;
    }
    if (!proc_alive(tok->pid, tok->start) || connect(s, (struct sockaddr *)&a, alen) != 0) {
        fprintf(stderr, PROG ": stale token %s: its keeper (pid %ld) has ended: the lease "
                        "was released already (by an earlier release, or when the process "
                        "it was tied to ended), or its keeper was killed\n",
                token, (long)tok->pid);
        close(s);
        *code = EXIT_STALE;
        return -1;
    }
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || cr.pid != tok->pid ||
        !proc_alive(tok->pid, tok->start)) {
        fprintf(stderr, PROG ": token %s: the control socket of keeper pid %ld is held by "
                        "pid %ld: not answering it\n",
                token, (long)tok->pid, (long)cr.pid);
        close(s);
        *code = TOOL_EX_UNAVAILABLE;
        return -1;
    }
    return s;
}

int keeper_request(const char *token, bool check, uint64_t grace_ms, bool verbose)
{
    const char *cmd = check ? "check" : "release";
    struct keeper_token tok;
    if (keeper_token_parse(token, &tok) != 0) {
        char shown[4 * 64 + 4];
        size_t n = strnlen(token, 64);
        tool_escape_text(token, n, shown);
        fprintf(stderr, PROG " %s: '%s%s' is not a token of " PROG " acquire (expected "
                        TOKEN_PREFIX "PID:START:FENCING)\n",
                cmd, shown, token[n] ? "..." : "");
        return TOOL_EX_USAGE;
    }
    int code = 0;
    int s = connect_keeper(&tok, token, &code);
    if (s < 0)
        return code;
    char req[96], ans[4 * (SHMLEASE_KEY_MAX + 1) + SHMLEASE_NAME_MAX + 64];
    if (check)
        snprintf(req, sizeof(req), "CHECK %llu", (unsigned long long)tok.fencing);
    else
        snprintf(req, sizeof(req), "RELEASE %llu %llu", (unsigned long long)tok.fencing,
                 (unsigned long long)grace_ms);
    struct pollfd pfd = { .fd = s, .events = POLLIN };
    ssize_t n = -1;
    if (send(s, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req) &&
        poll(&pfd, 1, ANSWER_WAIT_MS) == 1)
        n = recv(s, ans, sizeof(ans) - 1, 0);
    int e = errno;
    close(s);
    if (n <= 0) {
        fprintf(stderr, PROG " %s: keeper pid %ld did not answer%s%s\n", cmd, (long)tok.pid,
                n < 0 ? ": " : "", n < 0 ? strerror(e) : " (it ended meanwhile)");
        return n == 0 ? EXIT_STALE : TOOL_EX_OSERR;
    }
    ans[n] = '\0';
    /* "OK LEFT_MS TABLE KEY" or "ERR ERRNAME TABLE KEY" */
    char *w[4];
    unsigned long long left = 0;
    bool ok = split_words(ans, w, 4) == 4;
    if (ok && strcmp(w[0], "OK") == 0 && tool_parse_uint(w[1], UINT64_MAX, &left) == 0) {
        if (verbose && check)
            fprintf(stderr, PROG ": %s on table %s is held, %llu.%03llus left\n",
                    w[3], w[2], left / 1000, left % 1000);
        else if (verbose)
            fprintf(stderr, PROG ": released %s on table %s%s\n", w[3], w[2],
                    grace_ms ? " with a grace period" : "");
        return 0;
    }
    if (!ok || strcmp(w[0], "ERR") != 0) {
        fprintf(stderr, PROG " %s: keeper pid %ld gave an answer this version does not "
                        "know\n", cmd, (long)tok.pid);
        return TOOL_EX_OSERR;
    }
    const char *word = w[1], *table = w[2], *key = w[3];
    if (strcmp(word, "ESTALE") == 0) {
        fprintf(stderr, PROG ": %s on table %s: the lease was lost%s (ESTALE): it was broken "
                        "by an operator, or its keeper was paused past its TTL; what ran "
                        "since then was not protected by it\n",
                key, table, check ? "" : " before this release");
        return TOOL_EX_TEMPFAIL;
    }
    if (strcmp(word, "EPERM") == 0) {
        fprintf(stderr, PROG " %s: keeper pid %ld runs as another user: only that user "
                        "(or root) may %s its lease (EPERM)\n", cmd, (long)tok.pid, cmd);
        return TOOL_EX_UNAVAILABLE;
    }
    if (strcmp(word, "EINVAL") == 0) {
        fprintf(stderr, PROG " %s: token %s: keeper pid %ld holds %s on table %s with "
                        "another fencing token: not this lease\n",
                cmd, token, (long)tok.pid, key, table);
        return EXIT_STALE;
    }
    fprintf(stderr, PROG " %s: %s on table %s: %s (%s)\n", cmd, key, table,
            "the keeper could not do it", word);
    return TOOL_EX_OSERR;
}
