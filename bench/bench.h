/*
 * shmlease-bench: shmlease measured beside the locks users would pick instead,
 * in the same run on the same machine.
 *
 * Files:
 *   util.c    clock, statistics, process helpers, cleanup of everything we made
 *   peers.c   the table of peers (one interface: struct peer_ops), setup
 *   peer_*.c  one peer each: cas_word, robust_mutex, shmlease, flock,
 *             ofd_lock, posix_sem, redis (a real redis-server on a Unix
 *             socket, via hiredis)
 *   main.c    the driver: options, the report's header, the scenarios in order
 *   report.c  progress lines, CSV files, the number formats of the tables
 *   measure.c batches of back-to-back operations; shared control words
 *   uncontended.c trybusy.c contended.c manykeys.c wakeup.c takeover.c
 *   memory.c attach.c shared.c  one scenario each (bench/README.md says what each measures)
 *   goals.c   the PASS/MISS lines
 */
#ifndef SHMLEASE_BENCH_H
#define SHMLEASE_BENCH_H

#include <shmlease.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define MAXP        128      /* most processes of the contended scenario */
#define MAX_SAMPLES 2048     /* most per-sample values in shared memory */
#define BENCH_KEY   "bench-key"
#define LONG_TTL_MS 600000u  /* 10 minutes: never expires during a measurement */

/* ---- util.c ------------------------------------------------------------- */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

struct summary {
    int    n;
    double median, p99, min, max, mean;
};
/* Sorts v in place; nearest-rank percentiles. */
void   summarize(double *v, int n, struct summary *s);
double percentile_sorted(const double *v, int n, double p);

void   sleep_us(long us);
/* Polls *p until it is >= v; 0, or -1 after timeout_ms. */
int    wait_u32_ge(const uint32_t *p, uint32_t v, long timeout_ms);
/* State letter of /proc/PID/stat ('R', 'S', 'D', ...), or 0. */
char   proc_state(pid_t pid);
/* Waits until PID sleeps in the kernel ('S' or 'D'); 0, or -1 after timeout_ms. */
int    wait_blocked(pid_t pid, long timeout_ms);

/* Fork a child that runs fn(arg) and _exit()s with its result (0..255). The
 * child dies with the bench (PR_SET_PDEATHSIG) and is killed by the cleanup. */
pid_t  spawn(int (*fn)(void *), void *arg);
/* waitpid with a deadline: 0 and *status, or -1 (still running after timeout_ms). */
int    wait_child(pid_t pid, long timeout_ms, int *status);
/* SIGKILL and reap. */
void   kill_child(pid_t pid);
int    in_child(void);

/* Everything the bench creates outside its memory is registered here and
 * removed at exit, on error and on SIGINT/SIGTERM (only by the main process). */
void   cleanup_init(void);
void   cleanup_add_shm(const char *shmlease_table_name);   /* shmlease_unlink */
void   cleanup_add_sem(const char *sem_name);
void   cleanup_add_file(const char *path);
void   cleanup_add_dir(const char *path);                  /* rmdir, last */
void   cleanup_set_server(pid_t pid);                      /* redis-server */
void   cleanup_run(void);

void  *shared_alloc(size_t size);                          /* MAP_SHARED|ANON */

/* ---- peers.c ------------------------------------------------------------ */

enum peer_id {
    PEER_CAS, PEER_RMUTEX, PEER_SHMLEASE, PEER_FLOCK, PEER_OFD, PEER_SEM, PEER_REDIS,
    PEER_SHMLEASE_FAIR,
    PEER_SHMLEASE_REDIS,   /* the library with backend = the bench's redis-server */
    PEER__COUNT
};

/* One process's view of one peer. Made by attach() in the process that uses it
 * (after fork: every process opens its own file description, table handle,
 * connection). */
struct pinst {
    int              id;
    int              fd;
    shmlease_table  *table;
    shmlease_lease   lease;
    sem_t           *sem;
    void            *redis;         /* redisContext */
    const char      *key;
    uint64_t         ttl_ms;        /* shmlease and Redis */
    uint64_t         tok_seq;
    char             token[48];     /* Redis: the current claim's value */
    int              last_error;    /* negative errno of the last failure */
    uint64_t         owner_dead;    /* robust mutex: EOWNERDEAD seen */
};

struct peer_ops {
    const char *name;               /* short, for CSV and tables */
    int  (*attach)(struct pinst *);          /* 0 or -errno */
    int  (*try_acquire)(struct pinst *);     /* 0 acquired, 1 busy, <0 -errno */
    int  (*acquire)(struct pinst *);         /* blocks; 0 or -errno */
    int  (*release)(struct pinst *);         /* 0 or -errno */
    void (*detach)(struct pinst *);
};

/* State every process shares: the floor locks live here, with the control
 * words of the multi-process scenarios. */
struct shared {
    _Alignas(64) uint32_t cas_word;
    _Alignas(64) pthread_mutex_t rmutex;
    /* scenario control */
    _Alignas(64) uint32_t ready, go, stop, phase, waiting, done;
    uint32_t inside;                /* exclusion check: 1 while someone is in the CS */
    uint32_t violations;
    uint64_t counter;               /* incremented in the CS without atomics */
    uint64_t owner_changes;
    uint32_t last_owner;
    uint64_t t_mark;                /* ns: right before release()/kill() */
    uint64_t last_token;            /* shmlease: fencing token of the last claim */
    uint32_t token_violations;      /* a claim whose token was not greater */
    uint64_t counts[MAXP];
    int32_t  errors[MAXP];
    double   samples[MAX_SAMPLES];
};

struct bench_env {
    struct shared *sh;
    char  tmpdir[128];
    char  flock_path[192];
    char  ofd_path[192];
    char  sem_name[96];
    char  table_name[96];
    int   have_redis;
    char  redis_why[160];           /* why skipped */
    char  redis_sock[192];
    char  redis_sha[48];
    char  redis_version[64];
};
extern struct bench_env g_env;

extern const struct peer_ops peer_cas_word_ops, peer_robust_mutex_ops, peer_shmlease_ops, peer_shmlease_fair_ops,
                             peer_flock_ops, peer_ofd_lock_ops, peer_posix_sem_ops, peer_redis_ops,
                             peer_shmlease_redis_ops;

const struct peer_ops *peer(int id);
int  peers_setup(void);                   /* parent, once: files, semaphore, table, mutex */
int  peer_available(int id);
void pinst_init(struct pinst *pi, int id);
const char *peer_errname(int rc);
/* flock and ofd-lock: open PATH as the instance's own open file description. */
int  peer_file_attach(struct pinst *pi, const char *path);
void peer_file_detach(struct pinst *pi);

/* ---- peer_redis.c ------------------------------------------------------- */

/* Starts redis-server (fills g_env.have_redis / redis_why). */
void redis_start(const char *server_bin);
void redis_stop(void);
int  redis_poll_us(void);                 /* blocking acquire polls this often */
/* One PING and its answer on PI's connection (peer "redis" attached): the
 * round trip the Redis rows are measured against. 0 or -errno. */
int  redis_ping(struct pinst *pi);
extern int g_redis_ttl_ms;                /* TTL of blocking acquires (takeover) */

/* ---- main.c: the driver --------------------------------------------------- */

/* The scenarios, in the order they run. */
enum scenario_id {
    SC_UNCONTENDED, SC_TRYBUSY, SC_CONTENDED, SC_MANYKEYS, SC_WAKEUP, SC_TAKEOVER, SC_MEMORY,
    SC_ATTACH, SC_SHARED,
    SC__COUNT
};

struct bench_cfg {
    int         quick;
    const char *out;
    const char *dump_bin;
    const char *redis_bin;
    int         no_redis;
    unsigned    scenarios;        /* bit i: enum scenario_id i selected */
    int         batches;          /* uncontended, trybusy, manykeys */
    double      batch_ms;
    double      warm_ms;
    int         rounds;           /* contended, up to 8 processes */
    int         rounds_big;       /* contended, more processes */
    double      round_s;
    int         wake_samples;     /* wakeup */
    int         takeover_samples; /* takeover */
    uint32_t    big_keys;         /* manykeys: largest level */
};
extern struct bench_cfg g_cfg;

static inline int scenario_selected(enum scenario_id id)
{
    return (g_cfg.scenarios >> id) & 1u;
}

void scenario_uncontended(void);
void scenario_trybusy(void);
void scenario_contended(void);
void scenario_manykeys(void);
void scenario_wakeup(void);
void scenario_takeover(void);
void scenario_memory(void);
void scenario_attach(void);
void scenario_shared(void);
void goals(void);

/* ---- report.c ------------------------------------------------------------- */

extern int g_failed;              /* something broke: exit 1 */
extern double g_load_start;       /* load average at the start (goals.c) */

void  progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* OUT/name with its header line, or NULL (said on stderr). */
FILE *csv_open(const char *name, const char *header);

const char *fmt_t(char *buf, size_t n, double ns);    /* "23.4 ns", "1.27 µs" */
const char *fmt_rate(char *buf, size_t n, double r);  /* "1.60 M/s" */
const char *fmt_x(char *buf, size_t n, double x);     /* "0.94x", "303x" */
const char *fmt_fair(char *buf, size_t n, double f);  /* "1.07", "2e+07", "inf" */
#define T(ns)   fmt_t((char[32]){0}, 32, (ns))
#define RATE(r) fmt_rate((char[32]){0}, 32, (r))
#define X(x)    fmt_x((char[32]){0}, 32, (x))
#define FAIR(f) fmt_fair((char[32]){0}, 32, (f))

/* ---- measure.c ------------------------------------------------------------ */

/* One operation; 0 = done, else a negative errno (the measurement stops). */
typedef int (*op_fn)(void *ctx);

struct batch_res {
    struct summary s;     /* over batches: each value is one batch's mean ns/op */
    long  ops_per_batch;
    int   batches;
    int   err;            /* 0, or the failing op's result */
};

/* Warm up for g_cfg.warm_ms (also sizes the batches to ~g_cfg.batch_ms each),
 * then time g_cfg.batches batches of N back-to-back operations. */
void measure_batches(op_fn op, void *ctx, struct batch_res *br);
/* A CSV table of batch measurements (report.c): its header, and one row per
 * peer (nothing when CSV is NULL). */
#define BATCH_CSV_HEADER "peer,call,median_ns,p99_ns,min_ns,max_ns,batches,ops_per_batch"
void csv_batch_row(FILE *csv, const char *peer, const char *call, const struct batch_res *br);
/* The parts of an uncontended shmlease pair of PAIR_NS, timed alone (breakdown.c). */
void breakdown_print(double pair_ns);
/* Zeroes the control words of struct shared before a multi-process run. */
void reset_ctl(void);

/* The process counts of the contended scenario: g_nprocs[0 .. g_nprocs_n),
 * set by main.c (the full list, or a short one with --quick). */
#define NPROCS 6
extern int g_nprocs[NPROCS];
extern int g_nprocs_n;

/* What the goals need from the scenarios; NAN = not measured. */
struct results {
    double   uncontended_med[PEER__COUNT];
    double   redis_ping_med;                    /* one PING round trip, ns */
    double   trybusy_med[PEER__COUNT];          /* refused try on a held lock */
    double   contended_rate[PEER__COUNT][NPROCS];
    double   contended_chg[PEER__COUNT][NPROCS];   /* owner changes/s */
    double   takeover_med[PEER__COUNT], takeover_p99[PEER__COUNT];
    double   manykeys_med[8];
    uint32_t manykeys_level[8];
    int      manykeys_n;
    int      manykeys_big_skipped;
    double   attach_med, attach_flock_med;   /* open+close, open+flock+close */
    /* memory: foreach over the manykeys table (held: how many it held), and
     * shmlease-dump of a table of its own (dump_leases held; 0: not run) */
    double   slot_bytes_big;                    /* bytes/slot of the manykeys table */
    double   foreach_ms;
    uint32_t foreach_held;
    double   dump_text_ms, dump_json_ms;
    uint32_t dump_leases;
};
extern struct results g_res;
void results_init(void);          /* all NAN: nothing measured yet */

/* manykeys leaves its full table open; the memory scenario walks it, then
 * closes and removes it. */
struct big_table { shmlease_table *meas, *fill; char name[96]; };
extern struct big_table g_big;

#endif
