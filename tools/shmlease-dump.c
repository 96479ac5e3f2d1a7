/*
 * shmlease-dump: who holds what, and are they alive?
 *
 * Prints the state of shmlease tables: a summary of each table (format,
 * capacity, counters) and one row per held lease, in the manner of lslocks(8)
 * and ipcs(1); or the rows alone for scripts (-r); or one JSON document; or
 * the tables' metrics for Prometheus.
 *
 * It opens tables with SHMLEASE_OPEN_READONLY|SHMLEASE_OPEN_NOCREATE and uses
 * only the inspection calls (stats_get, foreach, inspect, waiters, now_ms),
 * which never take a lock and never write: it works on a table whose
 * structural mutex is held by a dead or stopped process. A segment that is
 * truncated while mapped raises SIGBUS on access; that, or any fault while
 * the library reads a hostile segment, is caught (see guard_* in
 * dump-read.c) and reported as an unusable table (exit 2) instead of a crash.
 *
 * This file: the command line, and one pass over the tables asked for. The
 * other parts are listed in dump.h.
 */
#include "dump.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const enum col_id default_cols[] = {
    COL_KEY, COL_TOKEN, COL_COMMAND, COL_PID, COL_MODE, COL_STATE, COL_LEFT, COL_WAITERS, COL_META
};

/* ------------------------------------------------------------------------ */
/* One pass                                                                  */

/* Reads each table of names[0..n) into views[]; returns how many views to
 * show and, in *code, the worst exit code. Tables found by the scan
 * (scanned) that are gone by the time they are opened are left out. */
static size_t read_views(const char *const *names, size_t n, bool scanned,
                         const struct dump_opts *o, struct table_view *views, int *code)
{
    size_t shown = 0;
    *code = DUMP_EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        struct table_view *v = &views[shown];
        collect(names[i], o, v);
        v->scanned = scanned;
        /* A table unlinked between the scan and the open is simply gone. */
        if (scanned && v->rc == -ENOENT && v->fault_sig == 0)
            continue;
        shown++;
        if (v->rc != 0 && !o->quiet_errors)
            report_error(v, o->key);
        /* --list reports unusable tables in its STATUS column and still
         * succeeds: a user's --list must not fail on others' tables; so do
         * the metrics of every table (shmlease_up 0). */
        if (!o->quiet_errors)
            *code = worse(*code, view_exit_code(v));
    }
    return shown;
}

static void free_names(char **names)
{
    if (names == NULL)
        return;
    for (size_t i = 0; names[i] != NULL; i++)
        free(names[i]);
    free(names);
}

/* Reads and prints every table asked for once; returns the exit code. */
static int dump_once(FILE *f, const struct dump_opts *o)
{
    const char **names = o->names;
    size_t n = o->nnames;
    char **scanned = NULL;
    if (o->list || o->all) {
        int err;
        scanned = scan_tables(&n, &err);
        if (scanned == NULL) {
            fprintf(stderr, PROG ": cannot read " TOOL_SHM_DIR ": %s\n", strerror(err));
            return DUMP_EXIT_UNUSABLE;
        }
        names = (const char **)scanned;
    }

    struct table_view *views = calloc(n + 1, sizeof(*views));
    if (views == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(TOOL_EX_OSERR);
    }
    int code;
    size_t shown = read_views(names, n, scanned != NULL, o, views, &code);
    if (o->prometheus && o->prom_file != NULL) {
        if (write_prometheus_file(o->prom_file, views, shown, o) != 0)
            code = worse(code, DUMP_EXIT_UNUSABLE);
    } else if (o->prometheus) {
        print_prometheus(f, views, shown, o);
    } else if (o->json) {
        print_json(f, views, shown, o);
    } else if (o->list) {
        print_list_text(f, views, shown, o);
    } else if (o->raw) {
        print_tables_raw(f, views, shown, o);
    } else {
        print_tables_text(f, views, shown, o);
    }
    proc_cache_clear();

    for (size_t i = 0; i < shown; i++)
        view_free(&views[i]);
    free(views);
    free_names(scanned);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " [options] NAME...\n"
"       " PROG " --list [--json|--raw]\n"
"       " PROG " --all [options]\n"
"       " PROG " --prometheus[=FILE] [--key KEY] [NAME...]\n"
"\n"
"Shows who holds which lease of the shmlease tables NAME (/dev/shm/shmlease.NAME),\n"
"whether the holders are alive, and each table's counters. Read-only: it never\n"
"takes a lock and never writes a table. With no NAME, same as --list.\n"
"\n"
"Options:\n"
"  -l, --list            one line per table found in " TOOL_SHM_DIR "\n"
"  -a, --all             full dump of every table found in " TOOL_SHM_DIR "\n"
"  -k, --key KEY         show only the lease of KEY (each holder of a shared key)\n"
"  -J, -j, --json        print one JSON document (with --watch: one per line)\n"
"  -r, --raw             lease rows only, cells split by one space (spaces in a\n"
"                        cell as \\x20), headings once; for scripts\n"
"      --prometheus[=FILE]  the tables' metrics in the Prometheus text format;\n"
"                        FILE is replaced atomically (node_exporter's textfile\n"
"                        collector); with no NAME, every table; with --key,\n"
"                        that key's own series too\n"
"  -w, --watch SECONDS   redraw every SECONDS (fractions allowed) until interrupted\n"
"  -o, --output COLS     lease columns, comma-separated; '+COLS' adds to the default\n"
"      --output-all      every column\n"
"  -n, --noheadings      no column headings\n"
"  -s, --no-summary      no table summary, lease rows only\n"
"  -H, --list-columns    describe the columns and exit\n"
"      --backend URL     the tables NAME are on this Redis server (default:\n"
"                        $" TOOL_BACKEND_ENV " if set); name them: a server's\n"
"                        tables are not listed\n"
"      --local           this host's tables, even if " TOOL_BACKEND_ENV " is set\n"
"  -h, --help            this help\n"
"  -V, --version         print the version\n"
"\n"
"Columns (default KEY,TOKEN,COMMAND,PID,MODE,STATE,LEFT,WAITERS,METADATA):\n"
"  KEY TOKEN COMMAND PID STATE LEFT EXPIRES WAITERS METADATA METALEN METAHEX\n"
"  PIDNS START HANDLE USER CGROUP UNIT UUNIT TABLE MODE HOLDERS WAITPIDS\n"
"A key held in shared mode has one row per holder. MODE is excl, shared, or\n"
"shared/N (a counted lease: at most N holders at once). WAITERS counts the\n"
"threads waiting for the key; WAITPIDS names their processes, '4711(3)' for\n"
"three threads of one. A key with rows in both modes is reserved: its\n"
"exclusive acquirer waits for the shared holders to leave (a note says so).\n"
"STATE is alive, dead (the holder exited: the next acquirer takes the lease at\n"
"once), unknown (liveness cannot be proven: the TTL decides) or grace (released\n"
"with a grace period, held by nobody; PID '-'). PID '1234*': a PID of another PID\n"
"namespace. COMMAND, USER, CGROUP, UNIT, UUNIT: the holder as /proc shows it;\n"
"'-' no holder (grace) or a dead one, '?' cannot be read (another PID namespace,\n"
"no permission). Keys and metadata are escaped (\\\\, \\n, \\t, \\xHH).\n"
"On a Redis server: no WAITPIDS or HANDLE (n/a), no segment, capacity or\n"
"handle count; PID '1234*' is a holder on another host or PID namespace\n"
"(STATE unknown: its TTL frees it). Each output names the backend: a\n"
"'backend:' line, the JSON member \"backend\", shmlease_backend_info.\n"
"\n"
"Exit status:\n"
"  0   success\n"
"  1   a table does not exist\n"
"  2   a table is unusable: corrupt, truncated, foreign format, permission denied;\n"
"      or the output could not be written\n"
"  3   --key: the key is not held (in some table)\n"
"  64  usage error (bad option, invalid table name or key)\n"
"With several tables the worst applies (64, 2, 1, 3, 0 in that order). --list\n"
"exits 0 and shows unusable tables in its STATUS column; so does --prometheus\n"
"with no NAME (shmlease_up 0), and --prometheus --key with the key free.\n");
}

static void list_columns(void)
{
    for (int c = 0; c < COL__COUNT; c++)
        printf("%-9s %s\n", columns[c].name, columns[c].help);
}

static int parse_columns(const char *spec, struct dump_opts *o)
{
    size_t n = 0;
    const char *p = spec;
    if (*p == '+') {
        for (size_t i = 0; i < sizeof(default_cols) / sizeof(default_cols[0]); i++)
            o->cols[n++] = default_cols[i];
        p++;
    }
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int c = 0; c < COL__COUNT; c++)
            if (strlen(columns[c].name) == len && strncasecmp(columns[c].name, p, len) == 0)
                found = c;
        if (found < 0 && len == 4 && strncasecmp(p, "META", 4) == 0)
            found = COL_META;
        if (found < 0) {
            fprintf(stderr, PROG ": unknown column '%.*s' (see --list-columns)\n",
                    (int)len, p);
            return -1;
        }
        if (n >= sizeof(o->cols) / sizeof(o->cols[0])) {
            fprintf(stderr, PROG ": too many columns\n");
            return -1;
        }
        o->cols[n++] = (enum col_id)found;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        fprintf(stderr, PROG ": no columns in '%s'\n", spec);
        return -1;
    }
    o->ncols = n;
    return 0;
}

static int watch_loop(struct dump_opts *o, int argc, char **argv)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    /* Blocked and collected with sigtimedwait: no handler, no lost wake-up. */
    sigprocmask(SIG_BLOCK, &set, NULL);
    bool tty = isatty(STDOUT_FILENO);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);

    /* Scripts read --json, --raw and --prometheus: no heading, no clearing. */
    bool plain = o->json || o->raw || o->prometheus;
    for (;;) {
        if (!plain) {
            if (tty)
                fputs("\033[H\033[2J", stdout);
            time_t now = time(NULL);
            char when[64];
            struct tm tmv;
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tmv));
            printf("Every %.3gs:", (double)o->watch_ms / 1000.0);
            for (int i = 0; i < argc; i++)
                printf(" %s", argv[i]);
            printf("    %s: %s\n\n", host, when);
        }
        dump_once(stdout, o);
        if (!o->json && !o->prometheus && !tty)
            putchar('\n');
        fflush(stdout);

        struct timespec ts = { .tv_sec = (time_t)(o->watch_ms / 1000),
                               .tv_nsec = (long)(o->watch_ms % 1000) * 1000000L };
        int sig;
        do
            sig = sigtimedwait(&set, NULL, &ts);
        while (sig < 0 && errno == EINTR);
        if (sig > 0)
            return DUMP_EXIT_OK;
    }
}

enum { OPT_LIST_COLUMNS = 'H', OPT_OUTPUT_ALL = 0x100, OPT_PROMETHEUS, OPT_BACKEND, OPT_LOCAL };

/* Applies one option (c as getopt_long returned it, with optarg) to *o.
 * Returns -1 to go on, or the exit code to leave with. */
static int apply_option(int c, struct dump_opts *o)
{
    switch (c) {
    case 'l':
        o->list = true;
        break;
    case 'a':
        o->all = true;
        break;
    case 'k':
        o->key = optarg;
        break;
    case 'j':
    case 'J':
        o->json = true;
        break;
    case 'r':
        o->raw = true;
        break;
    case OPT_PROMETHEUS:
        o->prometheus = true;
        if (optarg != NULL && optarg[0] == '\0') {
            fprintf(stderr, PROG ": --prometheus=: empty file name\n");
            return DUMP_EXIT_USAGE;
        }
        o->prom_file = optarg;
        break;
    case OPT_BACKEND:
        if (tool_backend_option(&o->bc, PROG, optarg) != 0)
            return DUMP_EXIT_USAGE;
        break;
    case OPT_LOCAL:
        if (tool_local_option(&o->bc, PROG) != 0)
            return DUMP_EXIT_USAGE;
        break;
    case OPT_OUTPUT_ALL:
        o->ncols = 0;
        for (int i = 0; i < COL__COUNT; i++)
            o->cols[o->ncols++] = (enum col_id)i;
        break;
    case 'w':
        if (tool_parse_duration_ms(optarg, &o->watch_ms) != 0 || o->watch_ms == 0) {
            fprintf(stderr, PROG ": --watch: invalid interval '%s'\n", optarg);
            return DUMP_EXIT_USAGE;
        }
        o->watch = true;
        break;
    case 'o':
        if (parse_columns(optarg, o) != 0)
            return DUMP_EXIT_USAGE;
        break;
    case 'n':
        o->noheadings = true;
        break;
    case 's':
        o->nosummary = true;
        break;
    case OPT_LIST_COLUMNS:
        list_columns();
        return DUMP_EXIT_OK;
    case 'h':
        usage(stdout);
        return DUMP_EXIT_OK;
    case 'V':
        printf(PROG " (shmlease) %d.%d.%d\n", SHMLEASE_VERSION_MAJOR,
               SHMLEASE_VERSION_MINOR, SHMLEASE_VERSION_PATCH);
        return DUMP_EXIT_OK;
    default:
        fprintf(stderr, "Try '" PROG " --help'.\n");
        return DUMP_EXIT_USAGE;
    }
    return -1;
}

/* Options and table names into *o. Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, struct dump_opts *o)
{
    static const struct option longopts[] = {
        { "list",         no_argument,       NULL, 'l' },
        { "all",          no_argument,       NULL, 'a' },
        { "key",          required_argument, NULL, 'k' },
        { "json",         no_argument,       NULL, 'j' },
        { "raw",          no_argument,       NULL, 'r' },
        { "prometheus",   optional_argument, NULL, OPT_PROMETHEUS },
        { "output-all",   no_argument,       NULL, OPT_OUTPUT_ALL },
        { "backend",      required_argument, NULL, OPT_BACKEND },
        { "local",        no_argument,       NULL, OPT_LOCAL },
        { "watch",        required_argument, NULL, 'w' },
        { "output",       required_argument, NULL, 'o' },
        { "noheadings",   no_argument,       NULL, 'n' },
        { "no-summary",   no_argument,       NULL, 's' },
        { "list-columns", no_argument,       NULL, OPT_LIST_COLUMNS },
        { "help",         no_argument,       NULL, 'h' },
        { "version",      no_argument,       NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < sizeof(default_cols) / sizeof(default_cols[0]); i++)
        o->cols[o->ncols++] = default_cols[i];

    int c;
    while ((c = getopt_long(argc, argv, "lak:jJrw:o:nsHhV", longopts, NULL)) != -1) {
        int code = apply_option(c, o);
        if (code >= 0)
            return code;
    }
    o->nnames = (size_t)(argc - optind);
    o->names = (const char **)(argv + optind);
    for (size_t i = 0; i < o->nnames; i++)
        o->names[i] = tool_table_name(o->names[i]);
    return -1;
}

/* Options that exclude each other, or need one another; no NAME and no
 * --all means --list. Returns -1 to go on, or the exit code. */
static int check_args(struct dump_opts *o)
{
    tool_backend_resolve(&o->bc);
    if (dump_remote(o) && (o->list || o->all || o->nnames == 0)) {
        fprintf(stderr, PROG ": the tables of the Redis server %s%s cannot be listed: name "
                        "them (" PROG " --backend URL NAME...); --list, --all and --prometheus "
                        "without NAME read this host's " TOOL_SHM_DIR " (--local)\n",
                o->bc.shown, o->bc.from_env ? " (from " TOOL_BACKEND_ENV ")" : "");
        return DUMP_EXIT_USAGE;
    }
    int outputs = o->json + o->raw + o->prometheus;
    if (outputs > 1) {
        fprintf(stderr, PROG ": --json, --raw and --prometheus exclude each other\n");
        return DUMP_EXIT_USAGE;
    }
    if (o->prometheus) {
        if (o->list) {
            fprintf(stderr, PROG ": --list and --prometheus exclude each other\n");
            return DUMP_EXIT_USAGE;
        }
        /* No NAME: every table, each unusable one as shmlease_up 0. */
        if (o->nnames == 0)
            o->all = true;
        o->quiet_errors = o->nnames == 0;
    }
    if (o->list && o->all) {
        fprintf(stderr, PROG ": --list and --all exclude each other\n");
        return DUMP_EXIT_USAGE;
    }
    if ((o->list || o->all) && o->nnames > 0) {
        fprintf(stderr, PROG ": --%s takes no table names\n", o->list ? "list" : "all");
        return DUMP_EXIT_USAGE;
    }
    if (o->list && o->key != NULL) {
        fprintf(stderr, PROG ": --list and --key exclude each other\n");
        return DUMP_EXIT_USAGE;
    }
    if (o->nnames == 0 && !o->all) {
        if (o->key != NULL) {
            fprintf(stderr, PROG ": --key needs a table NAME\n");
            return DUMP_EXIT_USAGE;
        }
        o->list = true;
    }
    if (o->list)
        o->quiet_errors = true;
    if (o->key != NULL && (o->key[0] == '\0' || strlen(o->key) > SHMLEASE_KEY_MAX)) {
        fprintf(stderr, PROG ": --key: a key is 1 to %d bytes\n", SHMLEASE_KEY_MAX);
        return DUMP_EXIT_USAGE;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct dump_opts o;
    int code = parse_args(argc, argv, &o);
    if (code < 0)
        code = check_args(&o);
    if (code >= 0)
        return code;
    o.color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;

    guard_install();
    if (o.watch)
        return watch_loop(&o, argc, argv);
    code = dump_once(stdout, &o);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROG ": write error: %s\n", strerror(errno));
        return worse(code, DUMP_EXIT_UNUSABLE);
    }
    return code;
}
