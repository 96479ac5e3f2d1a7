/*
 * Foreign and hostile segments (docs/failure-modes.md F16, F17).
 *
 * Files crafted byte by byte in /dev/shm from a real segment made by the
 * library: wrong magic, byte-swapped magic, another layout version, a
 * "32-bit build" (format word with sizeof(void *) = 4 and a 24-byte mutex),
 * bad checksum, inconsistent header, truncated (by a page, and below the
 * header), a foreign half-written file. Every open (read-write, NOCREATE,
 * read-only) must return -EPROTO and leave the file byte for byte as it was.
 *
 * Shrunk by a peer while mapped: a new opener gets -EPROTO; what existing
 * handles get is recorded (SIGBUS is the honest outcome of touching a mapped
 * page beyond the end of the file).
 *
 * Hostile contents behind a valid header (corrupt entries, buckets, free
 * list, registry, mutex bytes): inspection must not crash or hang; lease
 * calls on a read-write handle must not crash.
 */
#include "internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

static uint8_t *g_tpl;
static size_t g_tpl_len;

/* A real segment of capacity 4: "held" (by a process that is gone, in the
 * copy), "grace" in a grace period, "free" released. */
static void make_template(void)
{
    if (g_tpl)
        return;
    const char *name = tu_name("tpl");
    shmlease_table *t = tu_open_cap(name, 4);
    shmlease_acquire_opts o = {.ttl_ms = 3600000, .metadata = "meta", .metadata_len = 4};
    shmlease_lease l;
    TU_RC(shmlease_acquire(t, "held", &o, &l), 0);
    TU_RC(shmlease_acquire(t, "grace", &o, &l), 0);
    TU_RC(shmlease_release_after(t, &l, 3600000), 0);
    TU_RC(shmlease_acquire(t, "free", &o, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    char path[256];
    tu_shm_path(path, sizeof path, name);
    g_tpl = tu_read_file(path, &g_tpl_len);
    assert_non_null(g_tpl);
    assert_true(g_tpl_len >= SHM_HEADER_SIZE);
}

static void fix_checksum(uint8_t *b)
{
    struct shm_header *h = (struct shm_header *)b;
    h->checksum = (uint32_t)shmlease__header_checksum(h);
}

static int try_open(const char *name, uint32_t flags)
{
    shmlease_options o = {.flags = flags};
    shmlease_table *t = NULL;
    int rc = shmlease_open(name, &o, &t);
    if (rc == 0)
        shmlease_close(t);
    return rc;
}

/* Writes BUF as table NAME and checks that every kind of open refuses it
 * with -EPROTO without changing a byte. */
static void expect_refused(const char *what, const uint8_t *buf, size_t len)
{
    int rc0;
    const char *name = tu_name("foreign");
    char path[256];
    tu_shm_path(path, sizeof path, name);
    uint8_t *mine = malloc(len ? len : 1);
    assert_non_null(mine);
    memcpy(mine, buf, len);
    rc0 = tu_write_segment(name, mine, len);
    free(mine);
    TU_RC(rc0, 0);
    uint64_t d0, s0, d1, s1;
    TU_RC(tu_file_digest(path, &d0, &s0), 0);
    static const uint32_t flags[] = {0, SHMLEASE_OPEN_NOCREATE, SHMLEASE_OPEN_READONLY};
    static const char *const fname[] = {"read-write", "read-write NOCREATE", "read-only"};
    for (int i = 0; i < 3; i++) {
        int rc = try_open(name, flags[i]);
        TU_RC(tu_file_digest(path, &d1, &s1), 0);
        TU_TRUE(rc == -EPROTO && d1 == d0 && s1 == s0,
                 "%s segment, %s open: %s, file %s (size %llu -> %llu)", what, fname[i],
                 shmlease_errname(rc), d1 == d0 && s1 == s0 ? "unchanged" : "CHANGED",
                 (unsigned long long)s0, (unsigned long long)s1);
    }
    TU_TRUE(access(path, F_OK) == 0, "%s: the file was removed", what);
}

/* A working copy of the template (one buffer, reused: a failing assertion
 * longjmps out of the test and must not leak it). */
static uint8_t *copy_tpl(void)
{
    static uint8_t *work;
    make_template();
    if (!work)
        work = aligned_alloc(64, (g_tpl_len + 63) / 64 * 64);   /* shm_header is 64-aligned */
    assert_non_null(work);
    memcpy(work, g_tpl, g_tpl_len);
    return work;
}

static void t_template_is_valid(void **s)
{
    (void)s;
    make_template();
    const char *name = tu_name("valid");
    char path[256];
    tu_shm_path(path, sizeof path, name);
    TU_RC(tu_write_segment(name, copy_tpl(), g_tpl_len), 0);
    shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
    shmlease_table *t;
    TU_RC(shmlease_open(name, &o, &t), 0);
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "held", &info), 0);
    TU_TRUE(info.holder_alive == 0 && info.metadata_len == 4, "copied segment: alive %d", info.holder_alive);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "held", 1000, 0, &l), 0);      /* its holder is not alive in the copy */
    TU_RC(tu_acquire(t, "grace", 1000, 0, &l), -EBUSY);
    shmlease_close(t);
}

static void t_wrong_magic(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    memcpy(b, "NOTLEASE", 8);
    fix_checksum(b);
    expect_refused("wrong magic", b, g_tpl_len);
}

static void t_swapped_magic(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    struct shm_header *h = (struct shm_header *)b;
    h->magic = SHM_MAGIC_SWAPPED;
    fix_checksum(b);
    expect_refused("byte-swapped magic", b, g_tpl_len);
    /* And the whole immutable header swapped, as the other byte order writes it. */
    h->format = __builtin_bswap64(h->format);
    h->capacity = __builtin_bswap32(h->capacity);
    h->nbuckets = __builtin_bswap32(h->nbuckets);
    h->total_size = __builtin_bswap64(h->total_size);
    h->init_state = __builtin_bswap32(h->init_state);
    expect_refused("byte-swapped header", b, g_tpl_len);
}

static void t_other_version(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    struct shm_header *h = (struct shm_header *)b;
    h->format = (h->format & ~(UINT64_C(0xff) << 56)) | ((uint64_t)(SHM_LAYOUT_VERSION + 1) << 56);
    fix_checksum(b);
    expect_refused("layout version + 1", b, g_tpl_len);
    h->format = (h->format & ~(UINT64_C(0xff) << 56));
    fix_checksum(b);
    expect_refused("layout version 0", b, g_tpl_len);
}

static void t_32bit_layout(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    struct shm_header *h = (struct shm_header *)b;
    /* What shm_format_word() gives in a 32-bit build: 4-byte pointers, a 24-byte
     * pthread_mutex_t; the rest alike. */
    uint64_t f = shm_format_word();
    f &= ~((UINT64_C(0xff) << 48) | (UINT64_C(0xf) << 44));
    f |= (UINT64_C(24) << 48) | (UINT64_C(4) << 44);
    h->format = f;
    fix_checksum(b);
    expect_refused("32-bit build", b, g_tpl_len);
    tu_note("foreign: 32-bit layout (format %016llx vs ours %016llx) refused with -EPROTO, file unchanged",
             (unsigned long long)f, (unsigned long long)shm_format_word());
}

static void t_bad_checksum(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    ((struct shm_header *)b)->created_at ^= 1;        /* checksum not updated */
    expect_refused("bad checksum", b, g_tpl_len);
}

static void t_inconsistent_header(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    struct shm_header *h = (struct shm_header *)b;
    h->capacity = 1000;                              /* offsets are those of capacity 4 */
    fix_checksum(b);
    expect_refused("capacity/offsets mismatch", b, g_tpl_len);
    h->capacity = 4;
    h->nbuckets = 32;
    fix_checksum(b);
    expect_refused("bucket count mismatch", b, g_tpl_len);
    h->nbuckets = 16;
    h->total_size += 4096;
    fix_checksum(b);
    expect_refused("total size beyond the file", b, g_tpl_len);
    h->total_size -= 4096;
    h->capacity = 0;
    fix_checksum(b);
    expect_refused("capacity 0", b, g_tpl_len);
    h->capacity = SHMLEASE_CAPACITY_MAX + 1;
    fix_checksum(b);
    expect_refused("capacity too large", b, g_tpl_len);
    h->capacity = 4;
    h->entries_off += 8;
    fix_checksum(b);
    expect_refused("entries offset moved", b, g_tpl_len);
}

static void t_truncated(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    expect_refused("truncated by a page", b, g_tpl_len - 4096);
    expect_refused("truncated to the header page", b, SHM_HEADER_SIZE);
    expect_refused("truncated to the header struct", b, sizeof(struct shm_header));
}

/* A file shorter than the header struct, whose first bytes are ours (or
 * anybody's): not a half-made segment (a dying creator leaves 0 bytes or
 * the full size), so it must be refused, not overwritten. */
static void t_truncated_below_header(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    expect_refused("truncated to 100 bytes (our magic and format)", b, 100);
}

static void t_short_foreign_file(void **s)
{
    (void)s;
    char text[200];
    memset(text, 'x', sizeof text);
    memcpy(text, "precious data that is not a table\n", 34);
    expect_refused("200-byte foreign file", (const uint8_t *)text, sizeof text);
}

static void t_foreign_half_written(void **s)
{
    (void)s;
    static _Alignas(64) uint8_t b[64 * 1024];
    size_t len = sizeof b;
    memset(b, 0, len);
    /* No magic yet, but not zeroes either: somebody else's file. */
    memset(b + 600, 0xab, 100);
    expect_refused("zero magic with foreign content", b, len);
    ((struct shm_header *)b)->format = 0x1234;
    expect_refused("zero magic, foreign format word", b, len);
}

/* ---- shrunk while mapped ---------------------------------------------------------- */

enum shrink_op { S_INSPECT, S_FOREACH, S_STATS, S_ACQ_EXISTING, S_ACQ_NEW, S_RELEASE, S_CLOSE, S_NOPS };
static const char *const shrink_op_name[] = {"inspect", "foreach", "stats_get", "acquire existing key",
                                             "acquire new key", "release", "close"};

static int nop_cb(const shmlease_info *i, void *a)
{
    (void)i;
    (void)a;
    return 0;
}

static void shrink_case(off_t new_size, const char *label, int expect_new_open_eproto)
{
    const char *name = tu_name("shrink");
    shmlease_table *t = tu_open_cap(name, 4096);        /* 1.6 MB: the entries lie far out */
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k-far", 600000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    char path[256];
    tu_shm_path(path, sizeof path, name);

    /* Children attached before the shrink, one per operation. */
    int go[2], ready[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(ready), 0);
    pid_t pids[S_NOPS];
    for (int op = 0; op < S_NOPS; op++) {
        pids[op] = tu_fork_alarm(30);
        if (pids[op] == 0) {
            close(go[1]);
            close(ready[0]);
            shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
            shmlease_table *ct;
            TU_CK_RC(shmlease_open(name, &o, &ct), 0);
            shmlease_lease cl;
            if (op == S_RELEASE)
                TU_CK_RC(tu_acquire(ct, "k-child", 600000, 0, &cl), 0);
            char c = 1;
            TU_CK(write(ready[1], &c, 1) == 1);
            TU_CK(read(go[0], &c, 1) == 0);             /* EOF: go */
            shmlease_info info;
            shmlease_stats st;
            int rc = 0;
            switch (op) {
            case S_INSPECT: rc = shmlease_inspect(ct, "k-far", &info); break;
            case S_FOREACH: rc = shmlease_foreach(ct, nop_cb, NULL); break;
            case S_STATS: rc = shmlease_stats_get(ct, &st); break;
            case S_ACQ_EXISTING: rc = tu_acquire(ct, "k-far", 1000, 0, &cl); break;
            case S_ACQ_NEW: rc = tu_acquire(ct, "k-brand-new", 1000, 0, &cl); break;
            case S_RELEASE: rc = shmlease_release(ct, &cl); break;
            case S_CLOSE: shmlease_close(ct); break;
            }
            _exit(rc == 0 ? 0 : 100 + (-rc & 0x7f));
        }
    }
    close(go[0]);
    close(ready[1]);
    for (int op = 0; op < S_NOPS; op++) {
        char c;
        TU_TRUE(read(ready[0], &c, 1) == 1, "child %d did not attach", op);
    }
    close(ready[0]);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    TU_TRUE(ftruncate(fd, new_size) == 0, "ftruncate: %s", strerror(errno));
    close(fd);
    /* Our own handle would die in close (SIGBUS): it is never touched again. */
    tu_forget(t);

    /* A new opener must refuse the shrunk segment. */
    uint64_t d0, s0, d1, s1;
    TU_RC(tu_file_digest(path, &d0, &s0), 0);
    int rc_ro = try_open(name, SHMLEASE_OPEN_READONLY);
    int rc_rw = try_open(name, SHMLEASE_OPEN_NOCREATE);
    TU_RC(tu_file_digest(path, &d1, &s1), 0);

    close(go[1]);                                     /* the attached ones act */
    char outcome[S_NOPS][48];
    int sigbus = 0, ok = 0;
    for (int op = 0; op < S_NOPS; op++) {
        int st = tu_wait(pids[op], 60000);
        TU_TRUE(st != -1, "%s on a shrunk segment hung", shrink_op_name[op]);
        TU_TRUE(WIFEXITED(st) || (WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS),
                 "%s on a shrunk segment: %s (only a clean return or SIGBUS are expected)",
                 shrink_op_name[op], tu_status_str(st));
        if (WIFSIGNALED(st)) {
            sigbus++;
            snprintf(outcome[op], sizeof outcome[op], "SIGBUS");
        } else {
            ok++;
            int code = WEXITSTATUS(st);
            snprintf(outcome[op], sizeof outcome[op], "%s", code == 0 ? "0" : shmlease_errname(-(code - 100)));
        }
    }
    tu_note("foreign shrink to %s while attached: new opener RO %s, RW %s (file %s); existing handles: "
             "inspect %s, foreach %s, stats %s, acquire existing %s, acquire new %s, release %s, close %s",
             label, shmlease_errname(rc_ro), shmlease_errname(rc_rw),
             d0 == d1 && s0 == s1 ? "unchanged" : "REWRITTEN", outcome[0], outcome[1], outcome[2],
             outcome[3], outcome[4], outcome[5], outcome[6]);
    if (expect_new_open_eproto) {
        TU_RC(rc_ro, -EPROTO);
        TU_RC(rc_rw, -EPROTO);
        TU_TRUE(d0 == d1 && s0 == s1, "a new opener rewrote a shrunk segment that others still map");
    }
}

static void t_shrunk_while_mapped(void **s)
{
    (void)s;
    shrink_case(64 * 1024, "64 KiB", 1);
}

/* Shrunk below the header struct: a new read-write opener must not take it
 * for a half-made segment and re-initialise it under its attached users
 * (that would re-initialise live robust mutexes, docs/failure-modes.md F1). */
static void t_shrunk_below_header_while_mapped(void **s)
{
    (void)s;
    shrink_case(100, "100 bytes", 1);
}

/* ---- hostile contents behind a valid header ---------------------------------------------- */

static void corrupt_body(uint8_t *b, int mutexes)
{
    struct shm_header *h = (struct shm_header *)b;
    struct shm_entry *e = (struct shm_entry *)(b + h->entries_off);
    uint64_t *bk = (uint64_t *)(b + h->index_off);
    struct shm_reg *r = (struct shm_reg *)(b + h->reg_off);
    for (uint32_t i = 0; i < h->capacity; i++) {
        e[i].state = sw_held(4095, SW_DEADLINE_MASK);      /* held forever by slot 4095 */
        e[i].claim = 7;
        e[i].key_len = (uint16_t)(i == 0 ? 0xffffu : i == 1 ? 0 : 128 + i);
        e[i].meta_len = 0xfff0u;
        e[i].pub_seq = i == 2 ? 1 : 2;                       /* a writer "forever" */
        e[i].key_seq = i == 3 ? 3 : 0;
        e[i].pub_tag = (uint32_t)e[i].claim;
        e[i].next_free = i + 1;                              /* a cycle */
        memset(e[i].key, 'K', sizeof e[i].key);
        e[i].hash = 0;
    }
    for (uint32_t i = 0; i < h->nbuckets; i++)
        bk[i] = (i % 2) ? UINT64_C(0xffffffff00000000) | 0xfffffff0u : (uint64_t)(i % 4 + 1);
    h->free_head = 0xffffff00u;
    h->live_count = 0xffffffffu;
    h->index_seq = 1;                                        /* "being changed" forever */
    h->index_intent = (struct shm_intent){77, 0xffffffffu, 0, 0};
    for (uint32_t i = 0; i < SHM_REG_SLOTS; i++) {
        r[i].state = 0xdeadbeefu;
        r[i].pid = -1;
        r[i].gen = ~UINT64_C(0);
    }
    r[4095].state = SHM_REG_ACTIVE;
    if (mutexes) {
        memset(&h->index_mutex, 0xff, sizeof h->index_mutex);
        memset(&h->reg_mutex, 0xff, sizeof h->reg_mutex);
    }
}

static int count_cb(const shmlease_info *i, void *a)
{
    (void)i;
    (*(int *)a)++;
    return 0;
}

static void t_hostile_body_inspection(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    corrupt_body(b, 1);
    const char *name = tu_name("hostile");
    char path[256];
    tu_shm_path(path, sizeof path, name);
    TU_RC(tu_write_segment(name, b, g_tpl_len), 0);
    uint64_t d0, s0, d1, s1;
    TU_RC(tu_file_digest(path, &d0, &s0), 0);
    pid_t pid = tu_fork_alarm(20);
    if (pid == 0) {
        shmlease_options o = {.flags = SHMLEASE_OPEN_READONLY};
        shmlease_table *t;
        TU_CK_RC(shmlease_open(name, &o, &t), 0);
        shmlease_info info;
        static const char *const keys[] = {"held", "grace", "free", "KKKK", "x"};
        for (int i = 0; i < 5; i++) {
            int rc = shmlease_inspect(t, keys[i], &info);
            TU_CK(rc == 0 || rc == -ENOENT);
            TU_CK(rc != 0 || info.metadata_len <= SHMLEASE_METADATA_MAX);
        }
        int n = 0;
        TU_CK_RC(shmlease_foreach(t, count_cb, &n), 0);
        shmlease_stats st;
        TU_CK_RC(shmlease_stats_get(t, &st), 0);
        TU_CK(st.live_keys <= st.capacity);
        shmlease_close(t);
        _exit(0);
    }
    int st = tu_wait(pid, 15000);
    TU_RC(tu_file_digest(path, &d1, &s1), 0);
    TU_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
             "read-only inspection of a hostile segment: %s", tu_status_str(st));
    TU_TRUE(d0 == d1 && s0 == s1, "read-only inspection changed the segment");
    tu_note("foreign hostile body (corrupt entries/buckets/free list/registry, 0xff mutex bytes): "
             "read-only inspect/foreach/stats returned, no crash, no write");
}

/* Lease calls on a read-write handle over corrupt entries: anything but a
 * crash. (A writer of the segment can make calls block: see THREATS.md.) */
static void t_hostile_body_lease_calls(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    corrupt_body(b, 0);
    const char *name = tu_name("hostile-rw");
    char path[256];
    tu_shm_path(path, sizeof path, name);
    TU_RC(tu_write_segment(name, b, g_tpl_len), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = tu_fork_alarm(20);
    if (pid == 0) {
        close(p[0]);
        shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_table *t;
        int rc = shmlease_open(name, &o, &t);
        int32_t out[4] = {rc, 1, 1, 1};
        TU_CK(write(p[1], out, 4) == 4);
        if (rc)
            _exit(0);
        shmlease_lease l;
        out[1] = tu_acquire(t, "held", 1000, 0, &l);
        TU_CK(write(p[1], &out[1], 4) == 4);
        out[2] = tu_acquire(t, "brand-new", 1000, 0, &l);
        TU_CK(write(p[1], &out[2], 4) == 4);
        out[3] = tu_acquire(t, "brand-new-2", 1000, 5, &l);
        TU_CK(write(p[1], &out[3], 4) == 4);
        shmlease_close(t);
        _exit(0);
    }
    close(p[1]);
    int st = tu_wait(pid, 3000);
    int32_t res[4] = {1, 1, 1, 1};
    ssize_t n = read(p[0], res, sizeof res);
    close(p[0]);
    TU_TRUE(st == -1 || WIFEXITED(st), "lease calls on a hostile segment: %s", tu_status_str(st));
    tu_note("foreign hostile body, read-write: open %s, acquire of a corrupt key %s, new keys %s / %s%s",
             n >= 4 ? shmlease_errname(res[0]) : "?", n >= 8 ? shmlease_errname(res[1]) : "(blocked)",
             n >= 12 ? shmlease_errname(res[2]) : "(blocked)", n >= 16 ? shmlease_errname(res[3]) : "(blocked)",
             st == -1 ? "; the child hung and was killed after 3 s (a writer can wedge inserts: THREATS.md)" : "");
}

/* Every bucket non-empty (pointing nowhere), free list intact: lookups stay
 * bounded; inserting a new key has no empty bucket to go to. */
static void t_hostile_full_index(void **s)
{
    (void)s;
    uint8_t *b = copy_tpl();
    struct shm_header *h = (struct shm_header *)b;
    uint64_t *bk = (uint64_t *)(b + h->index_off);
    for (uint32_t i = 0; i < h->nbuckets; i++)
        bk[i] = UINT64_C(0x1234567800000000) | 0xfffffff0u;   /* entry beyond capacity */
    const char *name = tu_name("fullidx");
    char path[256];
    tu_shm_path(path, sizeof path, name);
    TU_RC(tu_write_segment(name, b, g_tpl_len), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = tu_fork_alarm(20);
    if (pid == 0) {
        close(p[0]);
        shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_table *t;
        TU_CK_RC(shmlease_open(name, &o, &t), 0);
        shmlease_info info;
        int32_t rc = shmlease_inspect(t, "held", &info);     /* bounded: falls back to a scan */
        TU_CK(write(p[1], &rc, 4) == 4);
        shmlease_lease l;
        rc = tu_acquire(t, "brand-new", 1000, 0, &l);
        TU_CK(write(p[1], &rc, 4) == 4);
        _exit(0);
    }
    close(p[1]);
    int st = tu_wait(pid, 3000);
    int32_t res[2] = {1, 1};
    ssize_t n = read(p[0], res, sizeof res);
    close(p[0]);
    TU_TRUE(st == -1 || WIFEXITED(st), "full index: %s", tu_status_str(st));
    TU_TRUE(n >= 4, "inspect blocked on a full index");
    /* An insert finding no empty bucket rebuilds the index instead of
     * spinning under the index mutex. */
    TU_TRUE(n >= 8, "acquire of a new key never returned on a full index (spins under the index mutex)");
    TU_TRUE(res[1] == 0, "acquire of a new key on a rebuilt index: %s", shmlease_errname(res[1]));
    tu_note("foreign hostile index (every bucket used, pointing nowhere): inspect %s; acquire of a new key %s",
             shmlease_errname(res[0]), shmlease_errname(res[1]));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_SLOW_TEST(t_template_is_valid),
        TU_SLOW_TEST(t_wrong_magic),
        TU_SLOW_TEST(t_swapped_magic),
        TU_SLOW_TEST(t_other_version),
        TU_SLOW_TEST(t_32bit_layout),
        TU_SLOW_TEST(t_bad_checksum),
        TU_SLOW_TEST(t_inconsistent_header),
        TU_SLOW_TEST(t_truncated),
        TU_SLOW_TEST(t_truncated_below_header),
        TU_SLOW_TEST(t_short_foreign_file),
        TU_SLOW_TEST(t_foreign_half_written),
        TU_SLOW_TEST(t_shrunk_while_mapped),
        TU_SLOW_TEST(t_shrunk_below_header_while_mapped),
        TU_SLOW_TEST(t_hostile_body_inspection),
        TU_SLOW_TEST(t_hostile_body_lease_calls),
        TU_SLOW_TEST(t_hostile_full_index),
    };
    return TU_RUN(tests);
}
