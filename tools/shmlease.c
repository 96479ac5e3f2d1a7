/*
 * shmlease: run a command under a lease (flock(1) with TTLs), and manage tables.
 *
 *   shmlease run [options] KEY -- COMMAND [ARGS...]
 *   shmlease create NAME [--capacity N] [--mode MODE]
 *   shmlease unlink NAME
 *   shmlease break [--table NAME] KEY
 *
 * run: the design of the supervision loop.
 *   The signals we forward, and SIGCHLD, are blocked before fork() and read
 *   from a signalfd, so none can be lost or handled half-way: no signal
 *   handlers at all. The child restores the original mask before exec. The
 *   parent loops on poll(signalfd, tick): each turn it reaps the child with
 *   waitpid(WNOHANG), renews the lease when a third of the TTL has passed and
 *   otherwise checks it with shmlease_check(), so a lease broken by an
 *   operator or lost to a pause is noticed within one tick (<= ttl/3, <= 1 s).
 *   Once the lease is lost the child gets SIGTERM, then SIGKILL after
 *   --kill-after, and we exit with the lost code whatever the child returns.
 *   The child is also given PR_SET_PDEATHSIG=SIGTERM: if this supervisor is
 *   killed, its lease is free for the next acquirer at once (dead holder), so
 *   the command must not go on unprotected.
 *   exec failures travel back through a close-on-exec pipe (126/127 as a shell).
 */
#include "doctor.h"
#include "tool-util.h"

#include <shmlease.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "shmlease"

/* Exit codes: keep in step with the help texts and shmlease.1. */
#define EXIT_CONFLICT_DEFAULT 1    /* run: key held (-n) or wait ran out (-w)  */
#define EXIT_NOT_DONE         1    /* create: exists; unlink/break: not found  */
#define EXIT_USAGE            TOOL_EX_USAGE        /* 64 */
#define EXIT_UNAVAILABLE      TOOL_EX_UNAVAILABLE  /* 69 */
#define EXIT_OSERR            TOOL_EX_OSERR        /* 71 */
#define EXIT_LOST_DEFAULT     TOOL_EX_TEMPFAIL     /* 75 */
#define EXIT_CANNOT_EXEC      126
#define EXIT_NOT_FOUND        127

#define STR_(x) #x
#define STR(x) STR_(x)
#define INVALID_KEY "invalid key (1 to " STR(SHMLEASE_KEY_MAX) " bytes)"

#define DEFAULT_TTL_MS        30000u
#define DEFAULT_KILL_AFTER_MS 10000u
#define MAX_TICK_MS           1000u

static const char exit_status_text[] =
"Exit status:\n"
"  0-255  run: the command's own exit status; 128+N if it was killed by signal N\n"
"  1      run: KEY is held (-n) or the wait ran out (-w); change with -E\n"
"         create: the table exists; unlink, break: no such table, or KEY not held\n"
"  64     usage error: bad option or number, invalid table name or key\n"
"  69     the table is unusable: another user's without --share (EPERM),\n"
"         permission denied (EACCES), not a table (EPROTO), full (ENOSPC), too\n"
"         many handles (EUSERS); run: the table named with -t does not exist\n"
"  71     system error: fork, memory, descriptors, unexpected library error\n"
"  75     run: the lease was lost while the command ran (broken, or this process\n"
"         was paused past the TTL); the command was terminated; see\n"
"         --lost-exit-code\n"
"  126    run: COMMAND cannot be executed\n"
"  127    run: COMMAND not found\n";

static void usage_main(FILE *f)
{
    fprintf(f,
"Usage: " PROG " run [options] KEY -- COMMAND [ARGS...]\n"
"       " PROG " create NAME [--capacity N] [--mode MODE] [--group GROUP]\n"
"       " PROG " unlink NAME\n"
"       " PROG " break [--table NAME] [--share] KEY\n"
"       " PROG " doctor [TABLE...]\n"
"       " PROG " COMMAND --help\n"
"\n"
"Named leases (locks that expire, with fencing tokens) shared by the processes\n"
"of this host through /dev/shm/shmlease.NAME. See shmlease-dump(1) to inspect.\n"
"Without --table, a command uses your own table, \"" TOOL_DEFAULT_TABLE_PREFIX "UID\" (made on first\n"
"use); a table named with --table must exist (unless run --create); another\n"
"user's table is used only with --share.\n"
"\n"
"Commands:\n"
"  run     acquire KEY, run COMMAND while renewing the lease, release at its end\n"
"  create  create a table (exclusive)\n"
"  unlink  remove a table (processes that have it open keep using it)\n"
"  break   forcibly end the lease on KEY (the holder's renewal fails)\n"
"  doctor  check what breaks tables here, and explain it\n"
"\n"
"Example (cron: at most one report at a time, skipped while one runs):\n"
"  */5 * * * * shmlease run -n --ttl 600 report -- /usr/local/bin/report\n"
"\n"
"%s", exit_status_text);
}

static void usage_run(FILE *f)
{
    fprintf(f,
"Usage: " PROG " run [options] KEY [--] COMMAND [ARGS...]\n"
"\n"
"Acquires KEY on a table, runs COMMAND as a child, renews the lease every third\n"
"of its TTL while it runs, releases it when COMMAND ends, and exits with\n"
"COMMAND's status. Without -n or -w, waits for KEY as long as it takes.\n"
"The child gets SHMLEASE_FENCING_TOKEN, SHMLEASE_KEY and SHMLEASE_TABLE in its\n"
"environment. SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded\n"
"to it (SIGINT/SIGQUIT typed at a terminal already reach it and are not sent twice).\n"
"If the lease is lost while COMMAND runs (an operator broke it, or this process\n"
"was paused past the TTL), COMMAND gets SIGTERM, then SIGKILL after --kill-after,\n"
"and " PROG " exits with the lost code (75). If " PROG " itself is killed, COMMAND\n"
"gets SIGTERM.\n"
"\n"
"Options:\n"
"  -t, --table NAME            the table to use; it must exist (see --create).\n"
"                              Default: your own table \"" TOOL_DEFAULT_TABLE_PREFIX "UID\", created\n"
"                              on first use\n"
"      --create                create the table named with -t if it is missing\n"
"                              (mode 0600: yours alone)\n"
"      --share                 use the table named with -t even if it belongs to\n"
"                              another user (when its mode lets you in)\n"
"  -n, --nonblock              fail at once if KEY is held (same as -w 0)\n"
"  -w, --wait SECONDS          wait at most SECONDS for KEY (fractions allowed)\n"
"  -T, --ttl SECONDS           lease time to live (default 30)\n"
"  -g, --grace SECONDS         keep KEY held (by nobody) SECONDS after COMMAND ends\n"
"  -m, --metadata TEXT         metadata stored with the lease, at most %d bytes\n"
"                              (default: the command line, truncated)\n"
"  -E, --conflict-exit-code N  exit status when KEY is held or the wait ran out\n"
"                              (default 1)\n"
"  -L, --lost-exit-code N      exit status when the lease was lost (default 75)\n"
"  -k, --kill-after SECONDS    SIGKILL the command this long after SIGTERM once the\n"
"                              lease is lost (default 10)\n"
"  -v, --verbose               say what happens on stderr (who holds a busy key)\n"
"  -h, --help                  this help\n"
"Durations are seconds, or a number with a unit: 500ms, 10s, 5m, 1h.\n"
"\n"
"Example (cron: at most one report at a time, skipped while one runs):\n"
"  */5 * * * * shmlease run -n --ttl 600 report -- /usr/local/bin/report\n"
"\n"
"%s", SHMLEASE_METADATA_MAX, exit_status_text);
}

static void usage_create(FILE *f)
{
    fprintf(f,
"Usage: " PROG " create NAME [--capacity N] [--mode MODE] [--group GROUP]\n"
"\n"
"Creates table NAME (/dev/shm/shmlease.NAME); fails if it exists. Other users\n"
"use it with --share, as far as its mode lets them.\n"
"  -c, --capacity N   live keys the table holds (default %u, at most %u)\n"
"  -m, --mode MODE    octal permission bits (default 0600, or 0660 with --group;\n"
"                     0660 or 0666 to share the table with other users)\n"
"  -g, --group GROUP  the table's group (a name or a number; you must be in it,\n"
"                     or root): its files get it before their mode opens them\n"
"  -h, --help         this help\n"
"\n"
"Example (a table for the members of group ops, who use it with --share):\n"
"  " PROG " create jobs --mode 0660 --group ops\n"
"\n%s", SHMLEASE_DEFAULT_CAPACITY, SHMLEASE_CAPACITY_MAX, exit_status_text);
}

static void usage_unlink(FILE *f)
{
    fprintf(f,
"Usage: " PROG " unlink NAME\n"
"\n"
"Removes table NAME. Processes that have it open keep using their copy; the\n"
"next opener creates a new, empty table. Only a table is removed: anything else\n"
"under the name (a directory, an empty or foreign file) is left alone.\n"
"\n%s", exit_status_text);
}

static void usage_break(FILE *f)
{
    fprintf(f,
"Usage: " PROG " break [--table NAME] [--share] KEY\n"
"\n"
"Forcibly ends the lease on KEY, held or in a grace period. The holder's next\n"
"renewal or check fails (" PROG " run terminates its command); the next acquirer\n"
"gets a greater fencing token.\n"
"  -t, --table NAME   table (default: your own, \"" TOOL_DEFAULT_TABLE_PREFIX "UID\"); never created\n"
"      --share        the table named with -t may belong to another user\n"
"  -q, --quiet        print nothing on success\n"
"  -h, --help         this help\n"
"\n%s", exit_status_text);
}

/* Exit code for an error opening or using a table. */
static int table_error_exit(int rc)
{
    switch (-rc) {
    case ENOENT:
        return EXIT_NOT_DONE;
    case EINVAL:
    case ENAMETOOLONG:
        return EXIT_USAGE;
    case EACCES:
    case EPROTO:
    case ENOSPC:
    case EUSERS:
    case EPERM:
        return EXIT_UNAVAILABLE;
    default:
        return EXIT_OSERR;
    }
}

static const char *open_error_text(int rc)
{
    switch (-rc) {
    case ENOENT:  return "no such table";
    case EINVAL:  return "invalid table name (allowed: [A-Za-z0-9._-]{1,200})";
    case EACCES:  return "permission denied";
    case EPERM:   return "another user's table (pass --share to use it)";
    case EPROTO:  return "not a usable shmlease table (corrupt, truncated, foreign, "
                         "made by another version, or still being initialised)";
    case ENOSPC:  return "no room in /dev/shm";
    default:      return shmlease_strerror(rc);
    }
}

/* Says why table REF could not be used (DOING: "use", "create", ...),
 * naming its owner, mode and group where that is the reason. */
static void report_table_error(const struct tool_table_ref *ref, int rc, const char *doing)
{
    char why[1024];
    if (tool_explain_table_error(ref, rc, why, sizeof(why)))
        fprintf(stderr, PROG ": %s (%s)\n", why, shmlease_errname(rc));
    else
        fprintf(stderr, PROG ": cannot %s table '%s': %s (%s)\n", doing, ref->name,
                open_error_text(rc), shmlease_errname(rc));
}

/* Long options without a letter (the letters are flock(1)'s or taken). */
enum { OPT_SHARE = 0x100, OPT_CREATE };

/*
 * Which table a command uses. "-t NAME" names one, which must exist unless
 * --create is given (a typo is an error, never a new table); without it the
 * command uses the caller's own default table, "user-UID", made on first
 * use, so that the users of one host never meet in a table by accident.
 * Another user's table is used only with --share.
 */
struct table_choice {
    const char *name;                        /* -t NAME, or the default's name */
    bool is_default;
    bool share;                              /* --share */
    bool create;                             /* --create */
    char default_name[SHMLEASE_NAME_MAX + 1];
};

/* "-t NAME" (a path /dev/shm/shmlease.NAME is taken too). */
static void choose_table(struct table_choice *c, const char *arg)
{
    c->name = tool_table_name(arg);
    c->is_default = false;
}

/* The table to use once the options are read: the default one if none was
 * named. */
static const char *chosen_table(struct table_choice *c)
{
    if (c->name == NULL) {
        tool_default_table(c->default_name, sizeof(c->default_name));
        c->name = c->default_name;
        c->is_default = true;
    }
    return c->name;
}

static struct tool_table_ref table_ref(const struct table_choice *c, bool may_create)
{
    struct tool_table_ref r = { .name = c->name, .is_default = c->is_default, .share = c->share,
                                .may_create = may_create };
    return r;
}

/* Opens the chosen table for a command that takes leases (MAY_CREATE:
 * "run", which creates the default table, and a named one with --create;
 * "break" never creates). Reports a failure. */
static int open_table(struct table_choice *c, bool may_create, shmlease_table **t)
{
    const char *name = chosen_table(c);
    shmlease_options o;
    memset(&o, 0, sizeof(o));
    if (!may_create || (!c->is_default && !c->create))
        o.flags |= SHMLEASE_OPEN_NOCREATE;
    if (c->share && !c->is_default)    /* your default table is yours: never shared */
        o.flags |= SHMLEASE_OPEN_SHARE;
    int rc = shmlease_open(name, &o, t);
    if (rc != 0) {
        struct tool_table_ref ref = table_ref(c, may_create);
        report_table_error(&ref, rc, "use");
    }
    return rc;
}

/* KEY as shown in messages: escaped (it may hold any byte but NUL), cut. */
#define SHOWN_KEY_SIZE (4 * (SHMLEASE_KEY_MAX + 1) + 4)
static const char *shown_key(const char *key, char *buf)
{
    size_t n = strnlen(key, SHMLEASE_KEY_MAX + 1);
    tool_escape_text(key, n, buf);
    if (key[n] != '\0')
        strcat(buf, "...");
    return buf;
}

static int parse_exit_code(const char *opt, const char *s, int *out)
{
    unsigned long long v;
    if (tool_parse_uint(s, 255, &v) != 0) {
        fprintf(stderr, PROG ": %s: '%s' is not an exit status (0-255)\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_duration_opt(const char *opt, const char *s, uint64_t *out)
{
    if (tool_parse_duration_ms(s, out) != 0) {
        fprintf(stderr, PROG ": %s: invalid duration '%s' (seconds, or 500ms, 10s, 5m, 1h)\n",
                opt, s);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* run                                                                       */

struct run_opts {
    struct table_choice tc;       /* -t, --share, --create */
    const char *table;            /* the table's name, once chosen */
    const char *key;
    char **cmd;
    int64_t wait_ms;
    uint64_t ttl_ms;
    uint64_t grace_ms;
    uint64_t kill_after_ms;
    const char *metadata;
    int conflict_code;
    int lost_code;
    bool verbose;
};

static int parse_wait_opt(const char *s, int64_t *wait_ms)
{
    uint64_t ms;
    if (parse_duration_opt("--wait", s, &ms) != 0)
        return -1;
    *wait_ms = ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ms;
    return 0;
}

static int parse_ttl_opt(const char *s, uint64_t *ttl_ms)
{
    if (parse_duration_opt("--ttl", s, ttl_ms) != 0)
        return -1;
    if (*ttl_ms == 0) {
        fprintf(stderr, PROG ": --ttl must be positive\n");
        return -1;
    }
    return 0;
}

static int check_metadata_opt(const char *s)
{
    if (strlen(s) > SHMLEASE_METADATA_MAX) {
        fprintf(stderr, PROG ": --metadata: at most %d bytes\n", SHMLEASE_METADATA_MAX);
        return -1;
    }
    return 0;
}

/* Applies one option of "run" (c as getopt_long returned it, with optarg).
 * Returns -1 to go on, or the exit status to leave with (0 after --help). */
static int apply_run_option(int c, struct run_opts *o)
{
    int bad = 0;
    switch (c) {
    case 't':
        choose_table(&o->tc, optarg);
        break;
    case OPT_SHARE:
        o->tc.share = true;
        break;
    case OPT_CREATE:
        o->tc.create = true;
        break;
    case 'n':
        o->wait_ms = 0;
        break;
    case 'w':
        bad = parse_wait_opt(optarg, &o->wait_ms);
        break;
    case 'T':
        bad = parse_ttl_opt(optarg, &o->ttl_ms);
        break;
    case 'g':
        bad = parse_duration_opt("--grace", optarg, &o->grace_ms);
        break;
    case 'm':
        o->metadata = optarg;
        bad = check_metadata_opt(optarg);
        break;
    case 'E':
        bad = parse_exit_code("--conflict-exit-code", optarg, &o->conflict_code);
        break;
    case 'L':
        bad = parse_exit_code("--lost-exit-code", optarg, &o->lost_code);
        break;
    case 'k':
        bad = parse_duration_opt("--kill-after", optarg, &o->kill_after_ms);
        break;
    case 'v':
        o->verbose = true;
        break;
    case 'h':
        usage_run(stdout);
        return 0;
    default:
        fprintf(stderr, "Try '" PROG " run --help'.\n");
        return EXIT_USAGE;
    }
    return bad != 0 ? EXIT_USAGE : -1;
}

/* Parses "run [options] KEY [options] [--] COMMAND [ARGS...]" into *o.
 * Returns -1 when the command is to run, or the exit status to leave with. */
static int parse_run_opts(int argc, char **argv, struct run_opts *o)
{
    static const struct option longopts[] = {
        { "table",              required_argument, NULL, 't' },
        { "share",              no_argument,       NULL, OPT_SHARE },
        { "create",             no_argument,       NULL, OPT_CREATE },
        { "nonblock",           no_argument,       NULL, 'n' },
        { "nb",                 no_argument,       NULL, 'n' },
        { "wait",               required_argument, NULL, 'w' },
        { "timeout",            required_argument, NULL, 'w' },
        { "ttl",                required_argument, NULL, 'T' },
        { "grace",              required_argument, NULL, 'g' },
        { "metadata",           required_argument, NULL, 'm' },
        { "conflict-exit-code", required_argument, NULL, 'E' },
        { "lost-exit-code",     required_argument, NULL, 'L' },
        { "kill-after",         required_argument, NULL, 'k' },
        { "verbose",            no_argument,       NULL, 'v' },
        { "help",               no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    /* Options may come before and after KEY: "run -n KEY --ttl 5 -- cmd".
     * getopt stops at KEY ('+'); we take it and start again after it, with
     * KEY in the place of argv[0] (optind = 0 re-initialises glibc's getopt). */
    int base = 0;                 /* argv index of the current getopt argv[0] */
    optind = 0;
    for (;;) {
        int c;
        while ((c = getopt_long(argc - base, argv + base, "+t:nw:T:g:m:E:L:k:vh", longopts,
                                NULL)) != -1) {
            int code = apply_run_option(c, o);
            if (code >= 0)
                return code;
        }
        int next = base + optind;              /* index in argv */
        /* getopt consumed a "--"; the first word after KEY is COMMAND. */
        if (o->key != NULL || next >= argc) {
            if (o->key == NULL) {
                fprintf(stderr, PROG " run: missing KEY\nTry '" PROG " run --help'.\n");
                return EXIT_USAGE;
            }
            if (next >= argc) {
                fprintf(stderr, PROG " run: missing COMMAND\nTry '" PROG " run --help'.\n");
                return EXIT_USAGE;
            }
            o->cmd = argv + next;
            return -1;                         /* parsed: go on */
        }
        o->key = argv[next];
        base = next;
        optind = 0;
    }
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void describe_holder(shmlease_table *t, const char *key)
{
    char kbuf[SHOWN_KEY_SIZE];
    const char *shown = shown_key(key, kbuf);
    shmlease_info in;
    if (shmlease_inspect(t, key, &in) != 0) {
        fprintf(stderr, PROG ": %s is held\n", shown);
        return;
    }
    char left[32];
    tool_format_left(in.remaining_ms > 0 ? in.remaining_ms : 0, left, sizeof(left));
    if (in.in_grace || in.holder_pid == 0)
        fprintf(stderr, PROG ": %s is in a grace period (token %llu, %s left)\n", shown,
                (unsigned long long)in.fencing_token, left);
    else
        fprintf(stderr, PROG ": %s is held by pid %ld%s (%s, token %llu, %s left)\n", shown,
                (long)in.holder_pid, in.holder_other_pidns ? " of another PID namespace" : "",
                in.holder_alive > 0 ? "alive" : in.holder_alive == 0 ? "dead" : "liveness unknown",
                (unsigned long long)in.fencing_token, left);
}

static int status_to_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return EXIT_OSERR;
}

/* Forwarded signals; SIGCHLD is read from the same signalfd. */
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

/* Everything the supervisor of one "run" knows, from the acquisition on. */
struct run_state {
    const struct run_opts *o;
    const char *key_shown;        /* o->key escaped for messages */
    shmlease_table *t;
    shmlease_lease lease;
    sigset_t oldmask;             /* the mask before the forwarded signals were blocked */
    int sfd;                      /* signalfd: forwarded signals and SIGCHLD */
    pid_t pid;                    /* the command */
    int exec_errno;               /* why exec failed; 0 when it succeeded */
    int status;                   /* the command's wait status */
    uint64_t renew_every;         /* ms: a third of the TTL */
    uint64_t tick;                /* ms: the longest sleep while the lease is held */
    uint64_t next_renew;          /* table clock, ms */
    bool lost;                    /* the lease is gone: the command got SIGTERM */
    bool killed;                  /* ... and then SIGKILL */
    uint64_t kill_at;             /* table clock, ms: when SIGKILL is due */
};

/* The metadata stored with the lease: --metadata, or else the command line
 * (words joined by spaces), cut at SHMLEASE_METADATA_MAX. Returns its length. */
static size_t run_metadata(const struct run_opts *o, char meta[SHMLEASE_METADATA_MAX + 1])
{
    size_t meta_len = 0;
    if (o->metadata != NULL) {
        meta_len = strlen(o->metadata);
        memcpy(meta, o->metadata, meta_len);
        return meta_len;
    }
    for (char **a = o->cmd; *a != NULL && meta_len < SHMLEASE_METADATA_MAX; a++) {
        if (a != o->cmd)
            meta[meta_len++] = ' ';
        size_t l = strlen(*a);
        size_t room = SHMLEASE_METADATA_MAX - meta_len;
        if (l > room)
            l = room;
        memcpy(meta + meta_len, *a, l);
        meta_len += l;
    }
    if (meta_len > SHMLEASE_METADATA_MAX)
        meta_len = SHMLEASE_METADATA_MAX;
    return meta_len;
}

/* Acquires KEY into s->lease, waiting as the options say. Returns -1 when
 * it is held, or the exit status to leave with (the table stays open). */
static int acquire_key(struct run_state *s, const char *meta, size_t meta_len)
{
    const struct run_opts *o = s->o;
    shmlease_acquire_opts ao;
    memset(&ao, 0, sizeof(ao));
    ao.ttl_ms = o->ttl_ms;
    ao.wait_ms = o->wait_ms;
    ao.metadata = meta_len ? meta : NULL;
    ao.metadata_len = meta_len;
    int rc = shmlease_acquire(s->t, o->key, &ao, &s->lease);
    if (rc == -EBUSY || rc == -ETIMEDOUT) {
        if (o->verbose)
            describe_holder(s->t, o->key);
        return o->conflict_code;
    }
    if (rc != 0) {
        const char *what = rc == -EINVAL || rc == -ENAMETOOLONG
                               ? INVALID_KEY
                           : rc == -ENOSPC ? "the table is full"
                                           : shmlease_strerror(rc);
        fprintf(stderr, PROG ": cannot acquire %s on table %s: %s (%s)\n", s->key_shown,
                o->table, what, shmlease_errname(rc));
        return table_error_exit(rc);
    }
    if (o->verbose)
        fprintf(stderr, PROG ": acquired %s on table %s, token %llu, ttl %llums\n",
                s->key_shown, o->table, (unsigned long long)s->lease.fencing_token,
                (unsigned long long)o->ttl_ms);
    return -1;
}

/* Blocks the forwarded signals and SIGCHLD, and opens the signalfd that
 * reads them; puts the lease's token, key and table in the environment the
 * command inherits; makes the pipe that carries an exec failure back.
 * 0, or -1 with errno set. */
static int prepare_spawn(struct run_state *s, int errpipe[2])
{
    sigset_t mask;
    sigemptyset(&mask);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(&mask, forwarded[i]);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &s->oldmask);
    s->sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    char token[32];
    snprintf(token, sizeof(token), "%llu", (unsigned long long)s->lease.fencing_token);
    if (s->sfd < 0 || pipe2(errpipe, O_CLOEXEC) != 0 ||
        setenv("SHMLEASE_FENCING_TOKEN", token, 1) != 0 ||
        setenv("SHMLEASE_KEY", s->o->key, 1) != 0 ||
        setenv("SHMLEASE_TABLE", s->o->table, 1) != 0)
        return -1;
    return 0;
}

/* In the child after fork(): async-signal-safe calls only until exec. Dies
 * with SIGTERM when the supervisor dies; reports an exec failure's errno
 * on errpipe and exits as a shell would (127 not found, 126 otherwise). */
static _Noreturn void exec_command(const struct run_state *s, pid_t parent, int errpipe[2])
{
    close(errpipe[0]);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(EXIT_OSERR);             /* the supervisor is already gone */
    sigprocmask(SIG_SETMASK, &s->oldmask, NULL);
    execvp(s->o->cmd[0], s->o->cmd);
    int e = errno;
    ssize_t w = write(errpipe[1], &e, sizeof(e));
    (void)w;
    _exit(e == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC);
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

/* Starts the command as a child. Returns -1 when it runs (or its exec
 * failed: s->exec_errno says), or the exit status to leave with. */
static int spawn_command(struct run_state *s)
{
    int errpipe[2] = { -1, -1 };
    if (prepare_spawn(s, errpipe) != 0) {
        fprintf(stderr, PROG ": %s\n", strerror(errno));
        return EXIT_OSERR;
    }
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid < 0) {
        fprintf(stderr, PROG ": fork: %s\n", strerror(errno));
        return EXIT_OSERR;
    }
    if (s->pid == 0)
        exec_command(s, parent, errpipe);
    s->exec_errno = read_exec_errno(errpipe);
    return -1;
}

/* Reaps the command if it has ended. true when the supervision is over:
 * the command ended (s->status), or waitpid failed. */
static bool reap_command(struct run_state *s)
{
    pid_t r = waitpid(s->pid, &s->status, WNOHANG);
    if (r == s->pid)
        return true;
    if (r < 0 && errno != EINTR) {
        fprintf(stderr, PROG ": waitpid: %s\n", strerror(errno));
        s->status = EXIT_OSERR << 8;
        return true;
    }
    return false;
}

/* Renews the lease when it is due, checks it otherwise. Once it is lost,
 * the command gets SIGTERM and SIGKILL is scheduled. Returns the time now. */
static uint64_t keep_lease(struct run_state *s, uint64_t now)
{
    const struct run_opts *o = s->o;
    int rc;
    if (now >= s->next_renew) {
        rc = shmlease_renew(s->t, &s->lease, o->ttl_ms);
        if (rc == 0)
            s->next_renew = now + s->renew_every;
    } else {
        rc = shmlease_check(s->t, &s->lease);
    }
    if (rc == 0)
        return now;
    s->lost = true;
    s->kill_at = now + o->kill_after_ms;
    fprintf(stderr,
            PROG ": lease %s on table %s lost (%s: %s): it was broken, or this "
            "process was paused past its TTL; sending SIGTERM to %s (pid %ld)\n",
            s->key_shown, o->table, shmlease_errname(rc),
            rc == -ESTALE ? "no longer the current claim" : shmlease_strerror(rc),
            o->cmd[0], (long)s->pid);
    kill(s->pid, SIGTERM);
    return shmlease_now_ms(s->t);
}

/* After the lease was lost: SIGKILL once --kill-after has passed. */
static void kill_when_due(struct run_state *s, uint64_t now)
{
    if (!s->lost || s->killed || now < s->kill_at)
        return;
    fprintf(stderr, PROG ": %s (pid %ld) still running %llums after SIGTERM; "
                    "sending SIGKILL\n",
            s->o->cmd[0], (long)s->pid, (unsigned long long)s->o->kill_after_ms);
    kill(s->pid, SIGKILL);
    s->killed = true;
}

/* Sleeps until a signal comes or the next renewal, check or SIGKILL is due. */
static void wait_for_event(struct run_state *s, uint64_t now)
{
    uint64_t wait_for;
    if (!s->lost)
        wait_for = min_u64(s->next_renew > now ? s->next_renew - now : 0, s->tick);
    else if (!s->killed)
        wait_for = min_u64(s->kill_at > now ? s->kill_at - now : 0, MAX_TICK_MS);
    else
        wait_for = MAX_TICK_MS;
    struct pollfd pfd = { .fd = s->sfd, .events = POLLIN };
    if (poll(&pfd, 1, (int)wait_for) < 0 && errno != EINTR) {
        fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
        kill(s->pid, SIGKILL);
    }
}

/* Sends the command every forwarded signal that came; SIGCHLD only wakes
 * the loop up. */
static void forward_signals(struct run_state *s)
{
    struct signalfd_siginfo si;
    while (read(s->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD)
            continue;                  /* reaped at the top of the loop */
        /* A terminal's ^C / ^\ goes to the whole foreground process group,
         * and the command stays in ours, so it has it already: do not send
         * it twice. */
        if (si.ssi_code == SI_KERNEL && (sig == SIGINT || sig == SIGQUIT))
            continue;
        if (s->o->verbose)
            fprintf(stderr, PROG ": forwarding signal %d to pid %ld\n", sig, (long)s->pid);
        kill(s->pid, sig);
    }
}

/* Runs until the command ends: renews or checks the lease each tick,
 * terminates the command if the lease is lost, forwards signals. */
static void supervise(struct run_state *s)
{
    s->renew_every = s->o->ttl_ms / 3 ? s->o->ttl_ms / 3 : 1;
    s->tick = min_u64(s->renew_every, MAX_TICK_MS);
    s->next_renew = shmlease_now_ms(s->t) + s->renew_every;
    while (!reap_command(s)) {
        uint64_t now = shmlease_now_ms(s->t);
        if (!s->lost)
            now = keep_lease(s, now);
        kill_when_due(s, now);
        wait_for_event(s, now);
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
        code = s->exec_errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
    }
    return code;
}

/* Releases the lease (after a grace period with --grace) once the command
 * ended with code. Returns the exit status: code, or the lost code if the
 * lease was lost before the command ended. */
static int finish_run(struct run_state *s, int code)
{
    const struct run_opts *o = s->o;
    if (s->lost) {
        fprintf(stderr, PROG ": %s ended with status %d after the lease was lost; "
                        "exiting with %d\n",
                o->cmd[0], code, o->lost_code);
        return o->lost_code;
    }
    int rc = o->grace_ms > 0 ? shmlease_release_after(s->t, &s->lease, o->grace_ms)
                             : shmlease_release(s->t, &s->lease);
    if (rc == -ESTALE) {
        /* Lost between the last check and the command's end: the command
         * may have run its last moments unprotected. */
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
    return code;
}

/* run: parse, open the table, acquire KEY, run COMMAND under the lease,
 * release it, exit with COMMAND's status. */
static int cmd_run(int argc, char **argv)
{
    struct run_opts o = {
        .wait_ms = SHMLEASE_WAIT_FOREVER,
        .ttl_ms = DEFAULT_TTL_MS,
        .kill_after_ms = DEFAULT_KILL_AFTER_MS,
        .conflict_code = EXIT_CONFLICT_DEFAULT,
        .lost_code = EXIT_LOST_DEFAULT,
    };
    int code = parse_run_opts(argc, argv, &o);
    if (code >= 0)
        return code;
    char kbuf[SHOWN_KEY_SIZE];
    struct run_state s = { .o = &o, .key_shown = shown_key(o.key, kbuf), .sfd = -1 };
    char meta[SHMLEASE_METADATA_MAX + 1];
    size_t meta_len = run_metadata(&o, meta);

    o.table = chosen_table(&o.tc);
    int rc = open_table(&o.tc, true, &s.t);
    if (rc != 0)                       /* a missing table: unusable, not a conflict (1) */
        return rc == -ENOENT ? EXIT_UNAVAILABLE : table_error_exit(rc);
    code = acquire_key(&s, meta, meta_len);
    if (code >= 0) {
        shmlease_close(s.t);
        return code;
    }
    /* From here on, every exit path releases (or lets go of) the lease. */
    code = spawn_command(&s);
    if (code >= 0) {
        shmlease_release(s.t, &s.lease);
        shmlease_close(s.t);
        return code;
    }
    supervise(&s);
    code = finish_run(&s, command_exit_code(&s));
    shmlease_close(s.t);
    return code;
}

/* ------------------------------------------------------------------------ */
/* create, unlink, break                                                     */

/* --capacity N: 1 to SHMLEASE_CAPACITY_MAX keys. 0, or -1 after a message. */
static int parse_capacity_opt(const char *s, uint32_t *capacity)
{
    unsigned long long v;
    if (tool_parse_uint(s, SHMLEASE_CAPACITY_MAX, &v) != 0 || v == 0) {
        fprintf(stderr, PROG " create: --capacity: 1 to %u\n",
                (unsigned)SHMLEASE_CAPACITY_MAX);
        return -1;
    }
    *capacity = (uint32_t)v;
    return 0;
}

/* --mode MODE: octal permission bits, 1 to 0777. 0, or -1 after a message. */
static int parse_mode_opt(const char *s, uint32_t *mode)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 8);
    if (s[0] < '0' || s[0] > '7' || *end != '\0' || errno != 0 || v > 0777) {
        fprintf(stderr, PROG " create: --mode: octal permission bits, at most 0777\n");
        return -1;
    }
    *mode = (uint32_t)v;
    if (*mode == 0) {
        fprintf(stderr, PROG " create: --mode 0 would lock everyone out\n");
        return -1;
    }
    return 0;
}

/* --group GROUP for create: its gid, and the mode (0660 unless --mode
 * says otherwise, which must give the group something). 0, or the exit
 * status after a message. */
static int check_group_opt(const char *group, shmlease_options *so, bool mode_given)
{
    gid_t gid;
    if (tool_group_id(group, &gid) != 0) {
        fprintf(stderr, PROG " create: --group: no such group '%s'\n", group);
        return EXIT_USAGE;
    }
    if (!mode_given)
        so->mode = 0660;
    if ((so->mode & 070) == 0) {
        fprintf(stderr, PROG " create: --group %s gives the table to a group, but --mode %04o gives "
                        "that group nothing: use --mode 0660 (its members may use the table) or "
                        "0640 (they may only read it)\n", group, (unsigned)so->mode);
        return EXIT_USAGE;
    }
    if (geteuid() != 0 && !tool_in_group(gid)) {
        char me[64];
        tool_user_name(geteuid(), me, sizeof(me));
        fprintf(stderr, PROG ": cannot create a table of group %s: you (%s) are not in group %s; "
                        "only its members and root may give it a table (EPERM)\n", group, me, group);
        return EXIT_UNAVAILABLE;
    }
    so->flags |= SHMLEASE_OPEN_GROUP;
    so->gid = (uint32_t)gid;
    return 0;
}

static int cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "capacity", required_argument, NULL, 'c' },
        { "mode",     required_argument, NULL, 'm' },
        { "group",    required_argument, NULL, 'g' },
        { "help",     no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    shmlease_options so;
    memset(&so, 0, sizeof(so));
    so.flags = SHMLEASE_OPEN_EXCL;
    const char *group = NULL;
    bool mode_given = false;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "c:m:g:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (parse_capacity_opt(optarg, &so.capacity) != 0)
                return EXIT_USAGE;
            break;
        case 'm':
            if (parse_mode_opt(optarg, &so.mode) != 0)
                return EXIT_USAGE;
            mode_given = true;
            break;
        case 'g':
            group = optarg;
            break;
        case 'h':
            usage_create(stdout);
            return 0;
        default:
            fprintf(stderr, "Try '" PROG " create --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, PROG " create: expected one table NAME\n");
        return EXIT_USAGE;
    }
    const char *name = tool_table_name(argv[optind]);
    if (group != NULL) {
        int code = check_group_opt(group, &so, mode_given);
        if (code != 0)
            return code;
    }
    shmlease_table *t;
    int rc = shmlease_open(name, &so, &t);
    if (rc != 0) {
        struct tool_table_ref ref = { .name = name };
        if (rc == -EPERM && group != NULL)
            fprintf(stderr, PROG ": cannot create table '%s' with group %s: you are not in that group "
                            "(EPERM)\n", name, group);
        else
            report_table_error(&ref, rc, "create");
        return rc == -EEXIST ? EXIT_NOT_DONE : table_error_exit(rc);
    }
    shmlease_close(t);
    return 0;
}

static int cmd_unlink(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage_unlink(stdout);
            return 0;
        }
        fprintf(stderr, "Try '" PROG " unlink --help'.\n");
        return EXIT_USAGE;
    }
    if (argc - optind != 1) {
        fprintf(stderr, PROG " unlink: expected one table NAME\n");
        return EXIT_USAGE;
    }
    const char *name = tool_table_name(argv[optind]);
    int rc = shmlease_unlink(name);
    if (rc != 0) {
        struct tool_table_ref ref = { .name = name, .removing = true };
        report_table_error(&ref, rc, "unlink");
        return table_error_exit(rc);
    }
    return 0;
}

/* "broke KEY on table T", with what was known of the lease (in: NULL if
 * nothing): its token, and its holder or that it was in a grace period. */
static void say_broken(const char *shown, const char *table, const shmlease_info *in)
{
    if (in != NULL && !in->in_grace && in->holder_pid != 0)
        printf("broke %s on table %s (token %llu, holder pid %ld%s)\n", shown, table,
               (unsigned long long)in->fencing_token, (long)in->holder_pid,
               in->holder_alive == 0 ? ", dead" : "");
    else if (in != NULL)
        printf("broke %s on table %s (token %llu, grace period)\n", shown, table,
               (unsigned long long)in->fencing_token);
    else
        printf("broke %s on table %s\n", shown, table);
}

static int cmd_break(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "table", required_argument, NULL, 't' },
        { "share", no_argument,       NULL, OPT_SHARE },
        { "quiet", no_argument,       NULL, 'q' },
        { "help",  no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct table_choice tc = { 0 };
    bool quiet = false;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "t:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            choose_table(&tc, optarg);
            break;
        case OPT_SHARE:
            tc.share = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            usage_break(stdout);
            return 0;
        default:
            fprintf(stderr, "Try '" PROG " break --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, PROG " break: expected one KEY\n");
        return EXIT_USAGE;
    }
    const char *key = argv[optind];
    char kbuf[SHOWN_KEY_SIZE];
    const char *shown = shown_key(key, kbuf);
    const char *table = chosen_table(&tc);
    shmlease_table *t;
    int rc = open_table(&tc, false, &t);
    if (rc != 0)
        return table_error_exit(rc);
    shmlease_info in;
    bool have_info = shmlease_inspect(t, key, &in) == 0;
    rc = shmlease_break(t, key);
    shmlease_close(t);
    if (rc == -ENOENT) {
        fprintf(stderr, PROG ": %s is not held on table %s\n", shown, table);
        return EXIT_NOT_DONE;
    }
    if (rc != 0) {
        fprintf(stderr, PROG ": cannot break %s on table %s: %s (%s)\n", shown, table,
                rc == -EINVAL || rc == -ENAMETOOLONG ? INVALID_KEY
                                                     : shmlease_strerror(rc),
                shmlease_errname(rc));
        return table_error_exit(rc);
    }
    if (!quiet)
        say_broken(shown, table, have_info ? &in : NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf(PROG " %d.%d.%d\n", SHMLEASE_VERSION_MAJOR, SHMLEASE_VERSION_MINOR,
               SHMLEASE_VERSION_PATCH);
        return 0;
    }
    /* Each command parses argv[1..]: its own name stands in for argv[0]. */
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "create") == 0)
        return cmd_create(argc - 1, argv + 1);
    if (strcmp(cmd, "unlink") == 0)
        return cmd_unlink(argc - 1, argv + 1);
    if (strcmp(cmd, "break") == 0)
        return cmd_break(argc - 1, argv + 1);
    if (strcmp(cmd, "doctor") == 0)
        return cmd_doctor(argc - 1, argv + 1);
    fprintf(stderr, PROG ": unknown command '%s'\nTry '" PROG " --help'.\n", cmd);
    return EXIT_USAGE;
}
