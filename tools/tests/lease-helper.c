/*
 * Test helper for the tool tests: does with the library what the tools are
 * checked against. Keys and metadata are passed in hex so that tests can use
 * any bytes. Output is one line of JSON per report, for Python's json module.
 *
 *   hold    TABLE KEYHEX TTL_MS METAHEX   acquire (try once), print
 *           {"token":N,"pid":P}, hold until stdin reaches EOF, then release
 *           and print {"released":RC}
 *   grace   TABLE KEYHEX TTL_MS METAHEX GRACE_MS
 *           acquire, release_after(GRACE_MS), print {"token":N}, exit
 *   wait    TABLE KEYHEX TTL_MS WAIT_MS   acquire waiting up to WAIT_MS, print
 *           {"rc":"ENAME","token":N}; release; exit
 *   threads TABLE KEYHEX TTL_MS N         N threads each acquire KEY (waiting up
 *           to a minute) and release it at once; prints {"pid":P} once they
 *           are started, then {"rc":"OK"} when every one has had the key
 *   inspect TABLE KEYHEX                  the library's view of one key
 *   stats   TABLE                         the library's counters
 *
 * Exit 0 on success, 1 when the library call failed, 2 on usage.
 */
#include <shmlease.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int unhex(const char *s, unsigned char *out, size_t max, size_t *len)
{
    size_t n = strlen(s);
    if (n % 2 != 0 || n / 2 > max)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    *len = n / 2;
    return 0;
}

static void hex(FILE *f, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", b[i]);
}

static shmlease_table *open_rw(const char *name)
{
    shmlease_table *t;
    int rc = shmlease_open(name, NULL, &t);
    if (rc != 0) {
        printf("{\"rc\":\"%s\"}\n", shmlease_errname(rc));
        exit(1);
    }
    return t;
}

/* stats TABLE */
static int cmd_stats(const char *table)
{
    shmlease_table *t = open_rw(table);
    shmlease_stats s;
    int rc = shmlease_stats_get(t, &s);
    if (rc != 0) {
        printf("{\"rc\":\"%s\"}\n", shmlease_errname(rc));
        return 1;
    }
    printf("{\"rc\":\"OK\",\"acquisitions\":%llu,\"contended\":%llu,\"waits\":%llu,"
           "\"timeouts\":%llu,\"busy\":%llu,\"expirations\":%llu,"
           "\"reclaimed_dead\":%llu,\"renewals\":%llu,\"lost\":%llu,"
           "\"broken\":%llu,\"recoveries\":%llu,\"fencing_counter\":%llu,"
           "\"capacity\":%u,\"live_keys\":%u,\"held\":%u,\"attached\":%u,"
           "\"format_version\":%u,\"segment_bytes\":%llu,\"created_at_ms\":%llu,"
           "\"table_epoch\":\"%016llx\"}\n",
           (unsigned long long)s.acquisitions, (unsigned long long)s.contended,
           (unsigned long long)s.waits, (unsigned long long)s.timeouts,
           (unsigned long long)s.busy, (unsigned long long)s.expirations,
           (unsigned long long)s.reclaimed_dead, (unsigned long long)s.renewals,
           (unsigned long long)s.lost,
           (unsigned long long)s.broken, (unsigned long long)s.recoveries,
           (unsigned long long)s.fencing_counter, s.capacity, s.live_keys, s.held,
           s.attached, s.format_version, (unsigned long long)s.segment_bytes,
           (unsigned long long)s.created_at_ms, (unsigned long long)s.table_epoch);
    shmlease_close(t);
    return 0;
}

/* inspect TABLE KEYHEX */
static int cmd_inspect(const char *table, const char *key)
{
    shmlease_table *t = open_rw(table);
    shmlease_info in;
    int rc = shmlease_inspect(t, key, &in);
    if (rc != 0) {
        printf("{\"rc\":\"%s\"}\n", shmlease_errname(rc));
        shmlease_close(t);
        return 1;
    }
    printf("{\"rc\":\"OK\",\"key_hex\":\"");
    hex(stdout, in.key, strlen(in.key));
    printf("\",\"fencing_token\":%llu,\"holder_pid\":%d,\"holder_alive\":%d,"
           "\"remaining_ms\":%lld,\"waiters\":%u,\"metadata_len\":%zu,"
           "\"metadata_hex\":\"",
           (unsigned long long)in.fencing_token, in.holder_pid, in.holder_alive,
           (long long)in.remaining_ms, in.waiters, in.metadata_len);
    hex(stdout, in.metadata, in.metadata_len <= SHMLEASE_METADATA_MAX
                                 ? in.metadata_len : SHMLEASE_METADATA_MAX);
    printf("\",\"expires_at_ms\":%llu,\"in_grace\":%d,\"holder_other_pidns\":%d,"
           "\"holder_start_time\":%llu,\"holder_handle\":%u,\"now_ms\":%llu}\n",
           (unsigned long long)in.expires_at_ms, in.in_grace, in.holder_other_pidns,
           (unsigned long long)in.holder_start_time, in.holder_handle,
           (unsigned long long)shmlease_now_ms(t));
    shmlease_close(t);
    return 0;
}

/* wait TABLE KEYHEX TTL_MS WAIT_MS (o holds the TTL) */
static int cmd_wait(const char *table, const char *key, shmlease_acquire_opts *o,
                    const char *wait_ms)
{
    o->wait_ms = strtoll(wait_ms, NULL, 10);
    shmlease_table *t = open_rw(table);
    shmlease_lease l;
    int rc = shmlease_acquire(t, key, o, &l);
    printf("{\"rc\":\"%s\",\"token\":%llu}\n", rc ? shmlease_errname(rc) : "OK",
           rc ? 0ULL : (unsigned long long)l.fencing_token);
    if (rc == 0)
        shmlease_release(t, &l);
    shmlease_close(t);
    return rc ? 1 : 0;
}

/* threads TABLE KEYHEX TTL_MS N: N threads of one process wait for KEY. */
struct waiter_arg {
    shmlease_table *t;
    const char *key;
    const shmlease_acquire_opts *o;
    int rc;
};

static void *waiter_main(void *p)
{
    struct waiter_arg *a = p;
    shmlease_lease l;
    a->rc = shmlease_acquire(a->t, a->key, a->o, &l);
    if (a->rc == 0)
        a->rc = shmlease_release(a->t, &l);
    return NULL;
}

static int cmd_threads(const char *table, const char *key, shmlease_acquire_opts *o,
                       const char *count)
{
    enum { MAX = 16 };
    int n = atoi(count);
    if (n < 1 || n > MAX)
        return 2;
    o->wait_ms = 60000;
    shmlease_table *t = open_rw(table);
    pthread_t th[MAX];
    struct waiter_arg a[MAX];
    for (int i = 0; i < n; i++) {
        a[i] = (struct waiter_arg){ .t = t, .key = key, .o = o, .rc = -1 };
        if (pthread_create(&th[i], NULL, waiter_main, &a[i]) != 0)
            return 1;
    }
    printf("{\"pid\":%d}\n", (int)getpid());
    int rc = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (a[i].rc != 0)
            rc = a[i].rc;
    }
    printf("{\"rc\":\"%s\"}\n", rc ? shmlease_errname(rc) : "OK");
    shmlease_close(t);
    return rc ? 1 : 0;
}

/* grace TABLE KEYHEX TTL_MS METAHEX GRACE_MS, once the lease is held */
static int cmd_grace(shmlease_table *t, shmlease_lease *l, const char *grace_ms)
{
    int rc = shmlease_release_after(t, l, strtoull(grace_ms, NULL, 10));
    printf("{\"rc\":\"%s\",\"token\":%llu}\n", rc ? shmlease_errname(rc) : "OK",
           (unsigned long long)l->fencing_token);
    shmlease_close(t);
    return rc ? 1 : 0;
}

/* hold TABLE KEYHEX TTL_MS METAHEX, once the lease is held */
static int cmd_hold(shmlease_table *t, shmlease_lease *l)
{
    printf("{\"rc\":\"OK\",\"token\":%llu,\"pid\":%d}\n",
           (unsigned long long)l->fencing_token, (int)getpid());
    char buf[64];
    while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
        ;
    int rc = shmlease_release(t, l);
    printf("{\"released\":\"%s\"}\n", rc ? shmlease_errname(rc) : "OK");
    shmlease_close(t);
    return 0;
}

/* grace and hold: acquire KEY with METAHEX (try once), then the command. */
static int cmd_acquire(int argc, char **argv, const char *key, shmlease_acquire_opts *o)
{
    const char *cmd = argv[1];
    unsigned char meta[SHMLEASE_METADATA_MAX];
    size_t meta_len = 0;
    if (argc < 6 || unhex(argv[5], meta, sizeof(meta), &meta_len) != 0) {
        fprintf(stderr, "lease-helper: bad METAHEX\n");
        return 2;
    }
    o->metadata = meta_len ? meta : NULL;
    o->metadata_len = meta_len;
    shmlease_table *t = open_rw(argv[2]);
    shmlease_lease l;
    int rc = shmlease_acquire(t, key, o, &l);
    if (rc != 0) {
        printf("{\"rc\":\"%s\"}\n", shmlease_errname(rc));
        return 1;
    }
    if (strcmp(cmd, "grace") == 0)
        return argc < 7 ? 2 : cmd_grace(t, &l, argv[6]);
    if (strcmp(cmd, "hold") == 0)
        return cmd_hold(t, &l);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: see the comment in lease-helper.c\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *cmd = argv[1];
    const char *table = argv[2];
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(table);

    char key[SHMLEASE_KEY_MAX + 2];
    size_t key_len = 0;
    if (argc < 4 || unhex(argv[3], (unsigned char *)key, SHMLEASE_KEY_MAX + 1, &key_len) != 0) {
        fprintf(stderr, "lease-helper: bad KEYHEX\n");
        return 2;
    }
    key[key_len] = '\0';
    if (strcmp(cmd, "inspect") == 0)
        return cmd_inspect(table, key);

    if (argc < 5)
        return 2;
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof(o));
    o.ttl_ms = strtoull(argv[4], NULL, 10);
    if (strcmp(cmd, "wait") == 0)
        return argc < 6 ? 2 : cmd_wait(table, key, &o, argv[5]);
    if (strcmp(cmd, "threads") == 0)
        return argc < 6 ? 2 : cmd_threads(table, key, &o, argv[5]);
    return cmd_acquire(argc, argv, key, &o);
}
