/*
 * shmlease: run a command under a lease (flock(1) with TTLs), guard part of a
 * shell script with one, and manage tables.
 *
 *   shmlease run [options] KEY -- COMMAND [ARGS...]    (run-supervise.c)
 *   shmlease acquire [options] KEY  /  release TOKEN  /  check TOKEN  (keeper.c)
 *   shmlease create NAME [--capacity N] [--mode MODE]
 *   shmlease unlink NAME
 *   shmlease break [--table NAME] KEY
 *
 * This file parses command lines and opens tables. Waiting for a key while
 * staying responsive to signals is lease-wait.c; the supervisor of run's
 * command and of everything it starts is run-supervise.c; the keeper process
 * that holds a script's lease, and its token, are keeper.c.
 */
#include "doctor.h"
#include "keeper.h"
#include "lease-wait.h"
#include "proctree.h"
#include "run.h"
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
#define EXIT_CONFLICT_DEFAULT 1    /* run, acquire: key held (-n) or wait ran out (-w) */
#define EXIT_NOT_DONE         1    /* create: exists; unlink/break: not found  */
#define EXIT_USAGE            TOOL_EX_USAGE        /* 64 */
#define EXIT_UNAVAILABLE      TOOL_EX_UNAVAILABLE  /* 69 */
#define EXIT_OSERR            TOOL_EX_OSERR        /* 71 */
#define EXIT_LOST_DEFAULT     TOOL_EX_TEMPFAIL     /* 75 */

#define STR_(x) #x
#define STR(x) STR_(x)
#define INVALID_KEY "invalid key (1 to " STR(SHMLEASE_KEY_MAX) " bytes)"
/* SHMLEASE_LIMIT_MAX is "1023u": its digits for the help texts. */
#define SHMLEASE_LIMIT_MAX_NUM 1023
_Static_assert(SHMLEASE_LIMIT_MAX_NUM == SHMLEASE_LIMIT_MAX, "help texts name the limit");

#define DEFAULT_TTL_MS        30000u
#define DEFAULT_KILL_AFTER_MS 10000u

static const char exit_status_text[] =
"Exit status:\n"
"  0-255  run: the command's own exit status; 128+N if it was killed by signal N\n"
"  0      acquire: the token is on stdout; release, check: done, the lease is held\n"
"  1      run, acquire: KEY is held (-n) or the wait ran out (-w); change with -E\n"
"         acquire: the process the lease was for (--pid) ended while it waited\n"
"         release, check: stale token (its keeper has ended: released already)\n"
"         create: the table exists; unlink, break: no such table, or KEY not held\n"
"  64     usage error: bad option or number, invalid table name or key, a TTL\n"
"         under 0.1 s, --limit with -x, a bad token; run, acquire: --limit (or\n"
"         its absence) differs from the limit KEY's shared holders use (EDOM);\n"
"         an invalid backend URL; an option a Redis table does not offer\n"
"  69     the table is unusable: another user's without --share (EPERM),\n"
"         permission denied (EACCES), not a table (EPROTO), full (ENOSPC), too\n"
"         many handles (EUSERS); run, acquire: the table named with -t does not\n"
"         exist; release, check: the keeper is another user's; a Redis server\n"
"         that cannot be reached or does not answer (ECONNREFUSED, ETIME), or\n"
"         refuses the call (EACCES), or a URL scheme not supported\n"
"  71     system error: fork, memory, descriptors, unexpected library error\n"
"  75     run: the lease was lost while the command ran (broken, or this process\n"
"         was paused past the TTL); its processes were stopped; see\n"
"         --lost-exit-code. release, check: the lease had been lost (ESTALE)\n"
"  126    run: COMMAND cannot be executed\n"
"  127    run: COMMAND not found\n"
"  128+N  run, acquire: killed by signal N while waiting for KEY (nothing held)\n";

static void usage_main(FILE *f)
{
    fprintf(f,
"Usage: " PROG " run [options] KEY [--] COMMAND [ARGS...]\n"
"       " PROG " run [options] KEY -c 'SHELL COMMAND'\n"
"       " PROG " acquire [options] KEY       (prints a TOKEN)\n"
"       " PROG " release [--grace SECONDS] TOKEN\n"
"       " PROG " check TOKEN\n"
"       " PROG " create NAME [--capacity N] [--mode MODE] [--group GROUP]\n"
"       " PROG " unlink NAME\n"
"       " PROG " break [--table NAME] [--share] KEY\n"
"       " PROG " doctor [TABLE...]\n"
"       " PROG " COMMAND --help\n"
"\n"
"Named leases (locks that expire, with fencing tokens) shared by the processes\n"
"of this host through /dev/shm/shmlease.NAME. See shmlease-dump(1) to inspect.\n"
"Every command but release and check also takes --backend URL: the table then\n"
"lives on that Redis server (redis://[[user]:password@]host[:port][/db] or\n"
"unix:///path/to/redis.sock[?db=N]), shared by every host that uses it. Without\n"
"--backend, " TOOL_BACKEND_ENV " gives the URL if set; --local uses this host's\n"
"tables whatever it says.\n"
"Without --table, a command uses your own table, \"" TOOL_DEFAULT_TABLE_PREFIX "UID\" (made on first\n"
"use); a table named with --table must exist (unless run --create); another\n"
"user's table is used only with --share.\n"
"\n"
"Commands:\n"
"  run      acquire KEY, run COMMAND while renewing the lease, release it when\n"
"           COMMAND and all it started have ended\n"
"  acquire  acquire KEY for part of a shell script and print a token; a keeper\n"
"           process holds the lease until 'release TOKEN' or until the script ends\n"
"  release  release the lease of a token\n"
"  check    tell whether the lease of a token is still held\n"
"  create   create a table (exclusive)\n"
"  unlink   remove a table (processes that have it open keep using it)\n"
"  break    forcibly end the lease on KEY (the holder's renewal fails)\n"
"  doctor   check what breaks tables here, and explain it\n"
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
"       " PROG " run [options] KEY -c 'SHELL COMMAND'\n"
"\n"
"Acquires KEY on a table, runs COMMAND while renewing the lease every third of\n"
"its TTL, releases it once COMMAND and every process it started have ended, and\n"
"exits with COMMAND's status. Without -n or -w, waits for KEY as long as it\n"
"takes; a signal (TERM, INT, HUP, ...) while waiting ends " PROG " by that signal,\n"
"holding nothing.\n"
"COMMAND runs in a process group of its own (in " PROG "'s when it has a\n"
"controlling terminal), with SHMLEASE_FENCING_TOKEN, SHMLEASE_KEY and\n"
"SHMLEASE_TABLE in its environment, and " TOOL_BACKEND_ENV " set to the table's\n"
"server (unset for a local table). SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and\n"
"SIGUSR2 are forwarded to its process group (SIGINT/SIGQUIT typed at a terminal\n"
"already reach it and are not sent twice). Processes that COMMAND leaves running\n"
"keep the lease held until they end (with -o, it is released when COMMAND ends).\n"
"If the lease is lost (an operator broke it, or this process was paused past\n"
"the TTL), every process COMMAND started, detached or re-parented ones too, gets\n"
"SIGTERM, then SIGKILL after --kill-after; " PROG " exits with the lost code (75)\n"
"once they are gone, or names those it could not stop. If " PROG " itself is\n"
"killed, COMMAND gets SIGTERM.\n"
"\n"
"Options:\n"
"  -t, --table NAME            the table to use; it must exist (see --create).\n"
"                              Default: your own table \"" TOOL_DEFAULT_TABLE_PREFIX "UID\", created\n"
"                              on first use\n"
"      --create                create the table named with -t if it is missing\n"
"                              (mode 0600: yours alone)\n"
"      --share                 use the table named with -t even if it belongs to\n"
"                              another user (when its mode lets you in)\n"
"      --backend URL           the table is on this Redis server (default:\n"
"                              $" TOOL_BACKEND_ENV " if set); no --share, -s\n"
"                              or --limit there\n"
"      --local                 this host's tables, even if " TOOL_BACKEND_ENV "\n"
"                              is set\n"
"  -n, --nonblock              fail at once if KEY is held (same as -w 0)\n"
"  -w, --wait, --timeout SECONDS\n"
"                              wait at most SECONDS for KEY (fractions allowed)\n"
"  -T, --ttl SECONDS           lease time to live (default 30, at least 0.1)\n"
"  -g, --grace SECONDS         keep KEY held (by nobody) SECONDS after COMMAND ends\n"
"  -m, --metadata TEXT         metadata stored with the lease, at most %d bytes\n"
"                              (default: the command line, truncated)\n"
"  -c, --command COMMAND       run COMMAND with /bin/sh -c (as flock -c)\n"
"  -o, --close                 release the lease when COMMAND ends, and leave the\n"
"                              processes it started running, without it\n"
"  -x, -e, --exclusive         an exclusive lease (the default): KEY's only holder\n"
"  -s, --shared                a shared lease (flock -s): any number of shared\n"
"                              holders at once, no exclusive one; a waiting\n"
"                              exclusive acquirer goes first\n"
"      --limit N               a counted lease: shared, at most N holders at once\n"
"                              (1 to " STR(SHMLEASE_LIMIT_MAX_NUM) "); every holder of KEY gives the same N\n"
"  -E, --conflict-exit-code N  exit status when KEY is held or the wait ran out\n"
"                              (default 1)\n"
"  -L, --lost-exit-code N      exit status when the lease was lost (default 75)\n"
"  -k, --kill-after SECONDS    SIGKILL the command's processes this long after\n"
"                              SIGTERM once the lease is lost (default 10)\n"
"  -v, --verbose               say on stderr whom it waits for, how long it took,\n"
"                              a dead holder's lease taken over, forwarded\n"
"                              signals, the release\n"
"  -h, --help                  this help\n"
"Durations are seconds, or a number with a unit: 500ms, 10s, 5m, 1h.\n"
"\n"
"Example (cron: at most one report at a time, skipped while one runs):\n"
"  */5 * * * * shmlease run -n --ttl 600 report -- /usr/local/bin/report\n"
"\n"
"%s", SHMLEASE_METADATA_MAX, exit_status_text);
}

static void usage_acquire(FILE *f)
{
    fprintf(f,
"Usage: " PROG " acquire [options] KEY\n"
"\n"
"Acquires KEY for part of a shell script, prints a token on stdout, and exits.\n"
"A keeper process holds the lease, renews it every third of its TTL, and\n"
"releases it on '" PROG " release TOKEN' or when the process it is tied to\n"
"(--pid) ends, whichever comes first:\n"
"\n"
"  tok=$(" PROG " acquire --pid $$ -w 60 backup) || exit 1\n"
"  ...                                 # only one script at a time runs this\n"
"  " PROG " release \"$tok\"\n"
"\n"
"The token is " PROG ":1:PID:START:FENCING: the keeper's PID and start time,\n"
"and the lease's fencing token. '" PROG " check TOKEN' tells whether the lease\n"
"is still held. A signal while waiting ends " PROG " by that signal, holding\n"
"nothing.\n"
"\n"
"Options:\n"
"  -p, --pid PID               the process the lease is tied to (default: the\n"
"                              parent of " PROG ", the shell when it runs the\n"
"                              command substitution itself; $$ is always the\n"
"                              script's shell)\n"
"  -t, --table NAME            the table to use; it must exist (see --create).\n"
"                              Default: your own table \"" TOOL_DEFAULT_TABLE_PREFIX "UID\", created\n"
"                              on first use\n"
"      --create                create the table named with -t if it is missing\n"
"      --share                 use the table named with -t even if it belongs to\n"
"                              another user (when its mode lets you in)\n"
"      --backend URL           the table is on this Redis server (default:\n"
"                              $" TOOL_BACKEND_ENV " if set); no --share, -s\n"
"                              or --limit there\n"
"      --local                 this host's tables, even if " TOOL_BACKEND_ENV "\n"
"                              is set\n"
"  -n, --nonblock              fail at once if KEY is held (same as -w 0)\n"
"  -w, --wait, --timeout SECONDS\n"
"                              wait at most SECONDS for KEY\n"
"  -T, --ttl SECONDS           lease time to live (default 30, at least 0.1)\n"
"  -m, --metadata TEXT         metadata stored with the lease, at most %d bytes\n"
"                              (default: \"for pid PID: \" and its command line)\n"
"  -x, -e, --exclusive         an exclusive lease (the default): KEY's only holder\n"
"  -s, --shared                a shared lease (flock -s): any number of shared\n"
"                              holders at once, no exclusive one; a waiting\n"
"                              exclusive acquirer goes first\n"
"      --limit N               a counted lease: shared, at most N holders at once\n"
"                              (1 to " STR(SHMLEASE_LIMIT_MAX_NUM) "); every holder of KEY gives the same N\n"
"  -E, --conflict-exit-code N  exit status when KEY is held or the wait ran out\n"
"                              (default 1)\n"
"  -v, --verbose               say on stderr whom it waits for and how long it took\n"
"  -h, --help                  this help\n"
"\n%s", SHMLEASE_METADATA_MAX, exit_status_text);
}

static void usage_release(FILE *f)
{
    fprintf(f,
"Usage: " PROG " release [--grace SECONDS] TOKEN\n"
"\n"
"Tells the keeper of TOKEN (printed by " PROG " acquire) to release its lease,\n"
"and waits for its answer. Exit 0 when released; 75 when the lease had been\n"
"lost (broken by an operator, or the keeper paused past its TTL); 1 when the\n"
"token is stale (released already, or its process ended).\n"
"  -g, --grace SECONDS  keep KEY held (by nobody) SECONDS more\n"
"  -v, --verbose        say what was released\n"
"  -h, --help           this help\n"
"\n%s", exit_status_text);
}

static void usage_check(FILE *f)
{
    fprintf(f,
"Usage: " PROG " check TOKEN\n"
"\n"
"Asks the keeper of TOKEN (printed by " PROG " acquire) whether its lease is\n"
"still held: exit 0 if it is, 75 if it was lost (broken, or the keeper paused\n"
"past its TTL), 1 if the token is stale.\n"
"  -v, --verbose   say how long the lease has left\n"
"  -h, --help      this help\n"
"\n%s", exit_status_text);
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
"      --backend URL  create it on this Redis server (default: $" TOOL_BACKEND_ENV "\n"
"                     if set); --capacity, --mode and --group do not apply there\n"
"      --local        a local table, even if " TOOL_BACKEND_ENV " is set\n"
"  -h, --help         this help\n"
"\n"
"Example (a table for the members of group ops, who use it with --share):\n"
"  " PROG " create jobs --mode 0660 --group ops\n"
"\n%s", SHMLEASE_DEFAULT_CAPACITY, SHMLEASE_CAPACITY_MAX, exit_status_text);
}

static void usage_unlink(FILE *f)
{
    fprintf(f,
"Usage: " PROG " unlink [--backend URL | --local] NAME\n"
"\n"
"Removes table NAME. Processes that have it open keep using their copy; the\n"
"next opener creates a new, empty table. Only a table is removed: anything else\n"
"under the name (a directory, an empty or foreign file) is left alone.\n"
"On a Redis server (--backend URL, or $" TOOL_BACKEND_ENV "), the table's keys\n"
"are deleted: its leases are lost, and their holders learn it at their next\n"
"renewal. --local removes a local table even if " TOOL_BACKEND_ENV " is set.\n"
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
"      --backend URL  the table is on this Redis server (default:\n"
"                     $" TOOL_BACKEND_ENV " if set)\n"
"      --local        this host's tables, even if " TOOL_BACKEND_ENV " is set\n"
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
    case EOPNOTSUPP:
        return EXIT_USAGE;
    case EACCES:
    case EPROTO:
    case ENOSPC:
    case EUSERS:
    case EPERM:
    case ECONNREFUSED:
    case ECONNRESET:
    case ETIME:
    case EPROTONOSUPPORT:
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
    if (ref->backend != NULL) {
        const char *text = tool_backend_error_text(rc);
        if (rc == -EINVAL && !tool_valid_table_name(ref->name))
            text = open_error_text(rc);
        fprintf(stderr, PROG ": cannot %s table '%s' on %s: %s (%s)\n", doing, ref->name,
                ref->backend, text != NULL ? text : shmlease_strerror(rc), shmlease_errname(rc));
        return;
    }
    char why[1024];
    if (tool_explain_table_error(ref, rc, why, sizeof(why)))
        fprintf(stderr, PROG ": %s (%s)\n", why, shmlease_errname(rc));
    else
        fprintf(stderr, PROG ": cannot %s table '%s': %s (%s)\n", doing, ref->name,
                open_error_text(rc), shmlease_errname(rc));
}

/* Long options without a letter (the letters are flock(1)'s or taken). */
enum { OPT_SHARE = 0x100, OPT_CREATE, OPT_LIMIT, OPT_BACKEND, OPT_LOCAL };


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
    tool_backend_resolve(&c->bc);
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
                                .may_create = may_create,
                                .backend = c->bc.url != NULL ? c->bc.shown : NULL };
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
    o.backend = c->bc.url;
    int rc = shmlease_open(name, &o, t);
    if (rc != 0) {
        struct tool_table_ref ref = table_ref(c, may_create);
        report_table_error(&ref, rc, "use");
    }
    return rc;
}

/* --backend URL, --local (PROG_CMD: "shmlease run", ... for messages).
 * 0, or -1 after a message. */
static int apply_backend_option(struct table_choice *c, int opt, const char *arg,
                                const char *prog_cmd)
{
    if (opt == OPT_BACKEND)
        return tool_backend_option(&c->bc, prog_cmd, arg);
    return tool_local_option(&c->bc, prog_cmd);
}

/* Once the options are read: what a table on a Redis server does not
 * offer (--share; shared and counted leases: LM, NULL for none) is refused
 * with a message naming the server. -1 to go on, or EXIT_USAGE. */
static int check_backend_opts(struct table_choice *c, const struct lease_mode *lm,
                              const char *cmd)
{
    chosen_table(c);
    if (c->bc.url == NULL)
        return -1;
    if (c->share) {
        fprintf(stderr, PROG " %s: --share does not apply to a table on the Redis server %s%s: "
                        "such a table has no owner on this host; who may use it is the "
                        "server's choice (AUTH, ACL)\n", cmd, c->bc.shown,
                c->bc.from_env ? " (from " TOOL_BACKEND_ENV ")" : "");
        return EXIT_USAGE;
    }
    if (lm != NULL && lm->shared) {
        fprintf(stderr, PROG " %s: shared and counted leases (-s, --limit) are not offered by "
                        "the Redis backend (%s%s): only exclusive leases (EOPNOTSUPP)\n", cmd,
                c->bc.shown, c->bc.from_env ? ", from " TOOL_BACKEND_ENV : "");
        return EXIT_USAGE;
    }
    return -1;
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
/* run, acquire: options                                                     */

static int parse_wait_opt(const char *s, int64_t *wait_ms)
{
    uint64_t ms;
    if (parse_duration_opt("--wait", s, &ms) != 0)
        return -1;
    *wait_ms = ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ms;
    return 0;
}

/* --ttl: at least RUN_MIN_TTL_MS, which renewal every third of it can keep. */
static int parse_ttl_opt(const char *s, uint64_t *ttl_ms)
{
    if (parse_duration_opt("--ttl", s, ttl_ms) != 0)
        return -1;
    if (*ttl_ms < RUN_MIN_TTL_MS) {
        fprintf(stderr, PROG ": --ttl %s is too short: at least %ums (0.1); the lease is "
                        "renewed every third of its TTL, and a shorter one would be lost "
                        "to ordinary scheduling delays\n", s, RUN_MIN_TTL_MS);
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

/* -s, -x (the last one wins, as in flock) and --limit N (a counted lease:
 * shared, at most N holders at once). */
static void apply_mode_letter(struct lease_mode *m, int c)
{
    m->shared = c == 's';
    if (c != 's')
        m->exclusive_given = true;
}

static int parse_limit_opt(const char *s, struct lease_mode *m)
{
    unsigned long long v;
    if (tool_parse_uint(s, SHMLEASE_LIMIT_MAX, &v) != 0 || v == 0) {
        fprintf(stderr, PROG ": --limit: '%s' is not a number of holders (1 to %u)\n", s,
                (unsigned)SHMLEASE_LIMIT_MAX);
        return -1;
    }
    m->limit = (uint32_t)v;
    m->shared = true;
    return 0;
}

/* Once every option is read: --limit counts shared holders, and an
 * exclusive lease has one. 0, or -1 after a message. */
static int check_mode_opts(const struct lease_mode *m)
{
    if (m->limit != 0 && m->exclusive_given) {
        fprintf(stderr, PROG ": --limit %u counts the holders of a shared lease; it cannot go "
                        "with -x (an exclusive lease has one holder)\n", (unsigned)m->limit);
        return -1;
    }
    return 0;
}

static void mode_to_opts(const struct lease_mode *m, shmlease_acquire_opts *ao)
{
    ao->mode = m->shared ? SHMLEASE_SHARED : SHMLEASE_EXCLUSIVE;
    ao->limit = m->shared ? m->limit : 0;
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
    case OPT_BACKEND:
    case OPT_LOCAL:
        bad = apply_backend_option(&o->tc, c, optarg, PROG " run");
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
    case 'c':
        o->shell_command = optarg;
        break;
    case 'o':
        o->close_early = true;
        break;
    case 'x':
    case 'e':
    case 's':
        apply_mode_letter(&o->lm, c);
        break;
    case OPT_LIMIT:
        bad = parse_limit_opt(optarg, &o->lm);
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

/* The words after KEY (or -c): COMMAND [ARGS...]. -1, or an exit status. */
static int take_command(struct run_opts *o, int argc, char **argv, int next)
{
    if (o->shell_command != NULL) {
        if (next < argc) {
            fprintf(stderr, PROG " run: -c gives the command; '%s' after KEY is one too "
                            "many\nTry '" PROG " run --help'.\n", argv[next]);
            return EXIT_USAGE;
        }
        o->sh_argv[0] = (char *)"/bin/sh";
        o->sh_argv[1] = (char *)"-c";
        o->sh_argv[2] = (char *)o->shell_command;
        o->sh_argv[3] = NULL;
        o->cmd = o->sh_argv;
        return -1;
    }
    if (next >= argc) {
        fprintf(stderr, PROG " run: missing COMMAND (or -c COMMAND)\nTry '" PROG
                        " run --help'.\n");
        return EXIT_USAGE;
    }
    o->cmd = argv + next;
    return -1;
}

/* Parses "run [options] KEY [options] [--] COMMAND [ARGS...]" into *o.
 * Returns -1 when the command is to run, or the exit status to leave with. */
static int parse_run_opts(int argc, char **argv, struct run_opts *o)
{
    static const struct option longopts[] = {
        { "table",              required_argument, NULL, 't' },
        { "share",              no_argument,       NULL, OPT_SHARE },
        { "create",             no_argument,       NULL, OPT_CREATE },
        { "backend",            required_argument, NULL, OPT_BACKEND },
        { "local",              no_argument,       NULL, OPT_LOCAL },
        { "nonblock",           no_argument,       NULL, 'n' },
        { "nb",                 no_argument,       NULL, 'n' },
        { "wait",               required_argument, NULL, 'w' },
        { "timeout",            required_argument, NULL, 'w' },
        { "ttl",                required_argument, NULL, 'T' },
        { "grace",              required_argument, NULL, 'g' },
        { "metadata",           required_argument, NULL, 'm' },
        { "command",            required_argument, NULL, 'c' },
        { "close",              no_argument,       NULL, 'o' },
        { "exclusive",          no_argument,       NULL, 'x' },
        { "shared",             no_argument,       NULL, 's' },
        { "limit",              required_argument, NULL, OPT_LIMIT },
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
        while ((c = getopt_long(argc - base, argv + base, "+t:nw:T:g:m:c:oxesE:L:k:vh",
                                longopts, NULL)) != -1) {
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
            if (check_mode_opts(&o->lm) != 0)
                return EXIT_USAGE;
            int code = check_backend_opts(&o->tc, &o->lm, "run");
            if (code >= 0)
                return code;
            return take_command(o, argc, argv, next);
        }
        o->key = argv[next];
        base = next;
        optind = 0;
    }
}

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

/* "--limit N" or "no --limit" (a shared lease of SHMLEASE_LIMIT_MAX holders). */
static void limit_text(uint32_t limit, char *buf, size_t size)
{
    if (limit == 0 || limit >= SHMLEASE_LIMIT_MAX)
        snprintf(buf, size, "no --limit");
    else
        snprintf(buf, size, "--limit %u", (unsigned)limit);
}

/* -EDOM: the key's live shared holders agreed on another limit. */
static void limit_mismatch(const struct lease_wait *w)
{
    char mine[32], theirs[64] = "another limit";
    limit_text(w->ao.limit, mine, sizeof(mine));
    shmlease_info in;
    if (shmlease_inspect(w->t, w->key, &in) == 0 && in.mode == SHMLEASE_SHARED) {
        char l[32];
        limit_text(in.limit, l, sizeof(l));
        snprintf(theirs, sizeof(theirs), "%s (%u holder%s now)", l, (unsigned)in.holders,
                 in.holders == 1 ? "" : "s");
    }
    fprintf(stderr, PROG ": cannot acquire %s on table %s with %s: its shared holders use %s; "
                    "every holder of a key must give the same limit (EDOM)\n",
            w->key_shown, w->table, mine, theirs);
}

/* The exit status for an acquisition that failed with w->rc (the conflict
 * code for a held key or a wait that ran out), after a message. */
static int acquire_failure(const struct lease_wait *w, const struct table_choice *tc,
                           int conflict_code)
{
    int rc = w->rc;
    if (rc == -EBUSY || rc == -ETIMEDOUT)
        return conflict_code;          /* -v has said who holds it */
    if (rc == -EDOM) {
        limit_mismatch(w);
        return EXIT_USAGE;
    }
    const char *what = rc == -EINVAL || rc == -ENAMETOOLONG ? INVALID_KEY
                       : rc == -ENOSPC                       ? "the table is full"
                                                             : shmlease_strerror(rc);
    if (tc->bc.url != NULL) {
        const char *btext = tool_backend_error_text(rc);
        if (btext != NULL && rc != -EINVAL && rc != -ENOENT)
            what = btext;
        fprintf(stderr, PROG ": cannot acquire %s on table %s on %s: %s (%s)\n", w->key_shown,
                w->table, tc->bc.shown, what, shmlease_errname(rc));
        return table_error_exit(rc);
    }
    fprintf(stderr, PROG ": cannot acquire %s on table %s: %s (%s)\n", w->key_shown, w->table,
            what, shmlease_errname(rc));
    return table_error_exit(rc);
}

/* ------------------------------------------------------------------------ */
/* run                                                                       */

/* run: parse, open the table, acquire KEY (a signal while waiting ends us,
 * holding nothing), run COMMAND under the lease until it and all it started
 * have ended, release, exit with COMMAND's status. */
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
    const char *key_shown = shown_key(o.key, kbuf);
    char meta[SHMLEASE_METADATA_MAX + 1];
    size_t meta_len = run_metadata(&o, meta);

    /* Before the table is opened: every thread made from here on has the
     * signals blocked, and the signalfd alone reads them. */
    sigset_t oldmask;
    int sfd = run_block_signals(&oldmask);
    if (sfd < 0) {
        fprintf(stderr, PROG ": signalfd: %s\n", strerror(-sfd));
        return EXIT_OSERR;
    }
    shmlease_table *t;
    o.table = chosen_table(&o.tc);
    int rc = open_table(&o.tc, true, &t);
    if (rc != 0)                       /* a missing table: unusable, not a conflict (1) */
        return rc == -ENOENT ? EXIT_UNAVAILABLE : table_error_exit(rc);
    struct lease_wait w = { .t = t, .table = o.table, .key = o.key, .key_shown = key_shown,
                            .verbose = o.verbose };
    w.ao.ttl_ms = o.ttl_ms;
    w.ao.wait_ms = o.wait_ms;
    w.ao.metadata = meta_len ? meta : NULL;
    w.ao.metadata_len = meta_len;
    mode_to_opts(&o.lm, &w.ao);
    switch (lease_wait(&w, sfd, NULL, 0)) {
    case LEASE_WAIT_ACQUIRED:
        break;
    case LEASE_WAIT_FAILED:
        code = acquire_failure(&w, &o.tc, o.conflict_code);
        shmlease_close(t);
        return code;
    case LEASE_WAIT_SIGNAL:
        die_by_signal(w.signo);        /* the acquiring thread may still be inside */
    case LEASE_WAIT_EVENT:
        fprintf(stderr, PROG ": poll: %s\n", strerror(-w.rc));
        fflush(NULL);
        _exit(EXIT_OSERR);
    }
    code = run_supervise(&o, t, &w.lease, key_shown, sfd, &oldmask);
    shmlease_close(t);
    return code;
}

/* ------------------------------------------------------------------------ */
/* acquire, release, check                                                   */

struct acquire_opts {
    struct table_choice tc;    /* -t, --share, --create */
    const char *table;         /* the table's name, once chosen */
    const char *key;
    long pid;                  /* the process the lease is tied to; 0: our parent */
    int64_t wait_ms;
    uint64_t ttl_ms;
    const char *metadata;
    int conflict_code;
    bool verbose;
    struct lease_mode lm;      /* -s, -x, --limit */
};

static int parse_acquire_opts(int argc, char **argv, struct acquire_opts *o)
{
    static const struct option longopts[] = {
        { "table",              required_argument, NULL, 't' },
        { "share",              no_argument,       NULL, OPT_SHARE },
        { "create",             no_argument,       NULL, OPT_CREATE },
        { "backend",            required_argument, NULL, OPT_BACKEND },
        { "local",              no_argument,       NULL, OPT_LOCAL },
        { "pid",                required_argument, NULL, 'p' },
        { "nonblock",           no_argument,       NULL, 'n' },
        { "nb",                 no_argument,       NULL, 'n' },
        { "wait",               required_argument, NULL, 'w' },
        { "timeout",            required_argument, NULL, 'w' },
        { "ttl",                required_argument, NULL, 'T' },
        { "metadata",           required_argument, NULL, 'm' },
        { "exclusive",          no_argument,       NULL, 'x' },
        { "shared",             no_argument,       NULL, 's' },
        { "limit",              required_argument, NULL, OPT_LIMIT },
        { "conflict-exit-code", required_argument, NULL, 'E' },
        { "verbose",            no_argument,       NULL, 'v' },
        { "help",               no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c, bad = 0;
    unsigned long long v;
    optind = 0;
    while (bad == 0 &&
           (c = getopt_long(argc, argv, "t:p:nw:T:m:xesE:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 't': choose_table(&o->tc, optarg); break;
        case OPT_SHARE: o->tc.share = true; break;
        case OPT_CREATE: o->tc.create = true; break;
        case OPT_BACKEND:
        case OPT_LOCAL:
            bad = apply_backend_option(&o->tc, c, optarg, PROG " acquire");
            break;
        case 'n': o->wait_ms = 0; break;
        case 'w': bad = parse_wait_opt(optarg, &o->wait_ms); break;
        case 'T': bad = parse_ttl_opt(optarg, &o->ttl_ms); break;
        case 'm':
            o->metadata = optarg;
            bad = check_metadata_opt(optarg);
            break;
        case 'x':
        case 'e':
        case 's': apply_mode_letter(&o->lm, c); break;
        case OPT_LIMIT: bad = parse_limit_opt(optarg, &o->lm); break;
        case 'E': bad = parse_exit_code("--conflict-exit-code", optarg, &o->conflict_code); break;
        case 'v': o->verbose = true; break;
        case 'p':
            if (tool_parse_uint(optarg, INT32_MAX, &v) != 0 || v == 0) {
                fprintf(stderr, PROG " acquire: --pid: '%s' is not a process ID\n", optarg);
                bad = -1;
            }
            o->pid = (long)v;
            break;
        case 'h':
            usage_acquire(stdout);
            return 0;
        default:
            fprintf(stderr, "Try '" PROG " acquire --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (bad != 0 || check_mode_opts(&o->lm) != 0)
        return EXIT_USAGE;
    if (argc - optind != 1) {
        fprintf(stderr, PROG " acquire: expected one KEY\nTry '" PROG " acquire --help'.\n");
        return EXIT_USAGE;
    }
    int code = check_backend_opts(&o->tc, &o->lm, "acquire");
    if (code >= 0)
        return code;
    o->key = argv[optind];
    return -1;
}

/* acquire's default metadata: "for pid PID: its command line". */
static size_t acquire_metadata(const struct acquire_opts *o, pid_t pid,
                               char meta[SHMLEASE_METADATA_MAX + 1])
{
    if (o->metadata != NULL) {
        size_t n = strlen(o->metadata);
        memcpy(meta, o->metadata, n);
        return n;
    }
    char line[SHMLEASE_METADATA_MAX + 1];
    if (proc_cmdline(pid, line, sizeof(line)) < 0)
        line[0] = '\0';
    int n = snprintf(meta, SHMLEASE_METADATA_MAX + 1, "for pid %ld: %s", (long)pid, line);
    return n < 0 ? 0 : (size_t)n > SHMLEASE_METADATA_MAX ? SHMLEASE_METADATA_MAX : (size_t)n;
}

/* acquire: forks the keeper, which acquires KEY and keeps it; prints the
 * token once it holds it. */
static int cmd_acquire(int argc, char **argv)
{
    struct acquire_opts o = {
        .wait_ms = SHMLEASE_WAIT_FOREVER,
        .ttl_ms = DEFAULT_TTL_MS,
        .conflict_code = EXIT_CONFLICT_DEFAULT,
    };
    int code = parse_acquire_opts(argc, argv, &o);
    if (code >= 0)
        return code;
    char kbuf[SHOWN_KEY_SIZE];
    const char *key_shown = shown_key(o.key, kbuf);
    struct keeper k;
    code = keeper_start(&k, (pid_t)o.pid, o.verbose);
    if (code >= 0)
        return code;

    /* The keeper, from here on. */
    char meta[SHMLEASE_METADATA_MAX + 1];
    size_t meta_len = acquire_metadata(&o, k.watched, meta);
    shmlease_table *t;
    o.table = chosen_table(&o.tc);
    int rc = open_table(&o.tc, true, &t);
    if (rc != 0)
        keeper_fail(&k, rc == -ENOENT ? EXIT_UNAVAILABLE : table_error_exit(rc));
    struct lease_wait w = { .t = t, .table = o.table, .key = o.key, .key_shown = key_shown,
                            .verbose = o.verbose };
    w.ao.ttl_ms = o.ttl_ms;
    w.ao.wait_ms = o.wait_ms;
    w.ao.metadata = meta_len ? meta : NULL;
    w.ao.metadata_len = meta_len;
    mode_to_opts(&o.lm, &w.ao);
    struct pollfd extra[2];
    keeper_wait_fds(&k, extra);
    switch (lease_wait(&w, k.sfd, extra, 2)) {
    case LEASE_WAIT_ACQUIRED:
        keeper_serve(&k, t, &w.lease, o.table, o.key, o.ttl_ms);
    case LEASE_WAIT_FAILED:
        keeper_fail(&k, acquire_failure(&w, &o.tc, o.conflict_code));
    case LEASE_WAIT_SIGNAL:
        _exit(128 + w.signo);          /* acquire told us to give up */
    case LEASE_WAIT_EVENT:
        break;
    }
    if (w.event == 0) {
        fprintf(stderr, PROG " acquire: pid %ld, which the lease was for, ended while waiting "
                        "for %s: nothing acquired\n", (long)k.watched, key_shown);
        keeper_fail(&k, EXIT_CONFLICT_DEFAULT);
    }
    if (w.event == LEASE_WAIT_POLL_FAILED) {
        fprintf(stderr, PROG ": poll: %s\n", strerror(-w.rc));
        keeper_fail(&k, EXIT_OSERR);
    }
    _exit(0);                          /* acquire is gone: nobody to give a lease to */
}

/* release [--grace S] TOKEN, check TOKEN */
static int cmd_token(int argc, char **argv, bool check)
{
    static const struct option longopts[] = {
        { "grace",   required_argument, NULL, 'g' },
        { "verbose", no_argument,       NULL, 'v' },
        { "help",    no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t grace_ms = 0;
    bool verbose = false;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, check ? "vh" : "g:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'g':
            if (check || parse_duration_opt("--grace", optarg, &grace_ms) != 0)
                return EXIT_USAGE;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            (check ? usage_check : usage_release)(stdout);
            return 0;
        default:
            fprintf(stderr, "Try '" PROG " %s --help'.\n", check ? "check" : "release");
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, PROG " %s: expected one TOKEN (printed by " PROG " acquire)\n",
                check ? "check" : "release");
        return EXIT_USAGE;
    }
    return keeper_request(argv[optind], check, grace_ms, verbose);
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
        { "backend",  required_argument, NULL, OPT_BACKEND },
        { "local",    no_argument,       NULL, OPT_LOCAL },
        { "help",     no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct tool_backend_choice bc = { 0 };
    bool capacity_given = false;
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
            capacity_given = true;
            break;
        case OPT_BACKEND:
            if (tool_backend_option(&bc, PROG " create", optarg) != 0)
                return EXIT_USAGE;
            break;
        case OPT_LOCAL:
            if (tool_local_option(&bc, PROG " create") != 0)
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
    tool_backend_resolve(&bc);
    if (bc.url != NULL && (capacity_given || mode_given || group != NULL)) {
        fprintf(stderr, PROG " create: %s does not apply to a table on the Redis server %s%s: "
                        "such a table has no capacity, mode or group of its own (it grows as "
                        "the server's memory allows; who may use it is the server's choice: "
                        "AUTH, ACL)\n",
                capacity_given ? "--capacity" : mode_given ? "--mode" : "--group", bc.shown,
                bc.from_env ? " (from " TOOL_BACKEND_ENV ")" : "");
        return EXIT_USAGE;
    }
    so.backend = bc.url;
    if (group != NULL) {
        int code = check_group_opt(group, &so, mode_given);
        if (code != 0)
            return code;
    }
    shmlease_table *t;
    int rc = shmlease_open(name, &so, &t);
    if (rc != 0) {
        struct tool_table_ref ref = { .name = name,
                                      .backend = bc.url != NULL ? bc.shown : NULL };
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
        { "backend", required_argument, NULL, OPT_BACKEND },
        { "local",   no_argument,       NULL, OPT_LOCAL },
        { "help",    no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct tool_backend_choice bc = { 0 };
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage_unlink(stdout);
            return 0;
        }
        if (c == OPT_BACKEND && tool_backend_option(&bc, PROG " unlink", optarg) == 0)
            continue;
        if (c == OPT_LOCAL && tool_local_option(&bc, PROG " unlink") == 0)
            continue;
        if (c != OPT_BACKEND && c != OPT_LOCAL)
            fprintf(stderr, "Try '" PROG " unlink --help'.\n");
        return EXIT_USAGE;
    }
    if (argc - optind != 1) {
        fprintf(stderr, PROG " unlink: expected one table NAME\n");
        return EXIT_USAGE;
    }
    const char *name = tool_table_name(argv[optind]);
    tool_backend_resolve(&bc);
    int rc = shmlease_unlink_backend(name, bc.url);
    if (rc != 0) {
        struct tool_table_ref ref = { .name = name, .removing = true,
                                      .backend = bc.url != NULL ? bc.shown : NULL };
        report_table_error(&ref, rc, "unlink");
        return table_error_exit(rc);
    }
    return 0;
}

/* "broke KEY on table T", with what was known of the lease (in: NULL if
 * nothing): its token, and its holder or that it was in a grace period. */
static void say_broken(const char *shown, const char *table, const char *where,
                       const shmlease_info *in)
{
    if (in != NULL && !in->in_grace && in->holder_pid != 0)
        printf("broke %s on table %s%s (token %llu, holder pid %ld%s%s)\n", shown, table, where,
               (unsigned long long)in->fencing_token, (long)in->holder_pid,
               in->holder_other_pidns ? " on another host or PID namespace" : "",
               in->holder_alive == 0 ? ", dead" : "");
    else if (in != NULL)
        printf("broke %s on table %s%s (token %llu, grace period)\n", shown, table, where,
               (unsigned long long)in->fencing_token);
    else
        printf("broke %s on table %s%s\n", shown, table, where);
}

static int cmd_break(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "table", required_argument, NULL, 't' },
        { "share", no_argument,       NULL, OPT_SHARE },
        { "backend", required_argument, NULL, OPT_BACKEND },
        { "local", no_argument,       NULL, OPT_LOCAL },
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
        case OPT_BACKEND:
        case OPT_LOCAL:
            if (apply_backend_option(&tc, c, optarg, PROG " break") != 0)
                return EXIT_USAGE;
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
    int code = check_backend_opts(&tc, NULL, "break");
    if (code >= 0)
        return code;
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
    char where[sizeof(tc.bc.shown) + 8] = "";
    if (tc.bc.url != NULL)
        snprintf(where, sizeof(where), " on %s", tc.bc.shown);
    if (rc == -ENOENT) {
        fprintf(stderr, PROG ": %s is not held on table %s%s\n", shown, table, where);
        return EXIT_NOT_DONE;
    }
    if (rc != 0) {
        const char *btext = tc.bc.url != NULL ? tool_backend_error_text(rc) : NULL;
        fprintf(stderr, PROG ": cannot break %s on table %s%s: %s (%s)\n", shown, table, where,
                rc == -EINVAL || rc == -ENAMETOOLONG ? INVALID_KEY
                : btext != NULL                      ? btext
                                                     : shmlease_strerror(rc),
                shmlease_errname(rc));
        return table_error_exit(rc);
    }
    if (!quiet)
        say_broken(shown, table, where, have_info ? &in : NULL);
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
    if (strcmp(cmd, "acquire") == 0)
        return cmd_acquire(argc - 1, argv + 1);
    if (strcmp(cmd, "release") == 0)
        return cmd_token(argc - 1, argv + 1, false);
    if (strcmp(cmd, "check") == 0)
        return cmd_token(argc - 1, argv + 1, true);
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
