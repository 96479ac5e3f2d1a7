/*
 * The segment as a file format: garbage, truncated, foreign-layout segments are
 * refused with -EPROTO without being changed; half-built segments (creator died
 * during initialisation) are recovered by the next opener.
 */
#include "testutil.h"
#include "internal.h"

#include <fcntl.h>
#include <sys/stat.h>

/* The layout comes from src/internal.h (the segment is a file format): the
 * tests corrupt one header field at a time, with the header checksum left
 * stale or recomputed so that each check is exercised on its own. */
#define HOFF(f) offsetof(struct shm_header, f)

typedef struct real_table {
    unsigned char *bytes;
    size_t len;
    shmlease_stats st;
    uint32_t capacity;
} real_table;

static real_table make_real_table(uint32_t capacity)
{
    real_table r;
    memset(&r, 0, sizeof r);
    const char *name = tu_name("real");
    shmlease_table *t = tu_open_cap(name, capacity);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "some-key", 60000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    r.st = tu_stats(t);
    tu_close(t);
    char p[512];
    tu_shm_path(p, sizeof p, name);
    r.bytes = tu_read_file(p, &r.len);
    assert_non_null(r.bytes);
    r.capacity = capacity;
    TU_EQU(r.len, r.st.segment_bytes);
    /* the layout we corrupt is the one the library wrote */
    uint64_t magic, format;
    uint32_t cap;
    memcpy(&magic, r.bytes + HOFF(magic), 8);
    memcpy(&format, r.bytes + HOFF(format), 8);
    memcpy(&cap, r.bytes + HOFF(capacity), 4);
    TU_EQU(magic, SHM_MAGIC);
    TU_EQU(format, shm_format_word());
    TU_EQU(cap, capacity);
    return r;
}

static unsigned char *copy_of(const real_table *r)
{
    unsigned char *b = malloc(r->len);
    memcpy(b, r->bytes, r->len);
    return b;
}

static void fix_checksum(unsigned char *b)
{
    struct shm_header h;
    memcpy(&h, b, sizeof h);
    uint32_t c = (uint32_t)shmlease__header_checksum(&h);
    memcpy(b + HOFF(checksum), &c, 4);
}

static void put_u32(unsigned char *b, size_t off, uint32_t v) { memcpy(b + off, &v, 4); }
static void put_u64(unsigned char *b, size_t off, uint64_t v) { memcpy(b + off, &v, 8); }

/* A segment names its lock file (inode and device in the header): a byte
 * copy under another name would name the original's, and a read-write open
 * refuses it (-EPROTO) whatever else is in it. So that each check below is
 * exercised on its own, the copy gets its own lock file (tu_adopt_lock_file,
 * tu_write_segment:
 * made, and named in the copy's header; the checksum is recomputed only if it
 * was right, a stale one stays stale). */
/* Writes BYTES (LEN) as the segment of NAME, with a lock file of its own. */
static void write_segment(const char *name, const void *bytes, size_t len)
{
    unsigned char *b = malloc(len ? len : 1);
    memcpy(b, bytes, len);
    TU_RC(tu_write_segment(name, b, len), 0);
    free(b);
}

/* Opens NAME in a child with FLAGS: returns the child's "result": the
 * negative errno or 0, or fails the test if the child crashed or hung. */
static int open_in_child(const char *name, uint32_t flags, int use_table)
{
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_options o = { 0 };
        o.flags = flags;
        shmlease_table *t = NULL;
        int rc = shmlease_open(name, &o, &t);
        if (rc == 0 && use_table) {
            shmlease_lease l;
            shmlease_info i;
            if (!(flags & SHMLEASE_OPEN_READONLY)) {
                TU_CK_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
                TU_CK_RC(shmlease_inspect(t, "k", &i), 0);
                TU_CK_RC(shmlease_release(t, &l), 0);
            }
            shmlease_stats s;
            TU_CK_RC(shmlease_stats_get(t, &s), 0);
        }
        if (rc == 0)
            shmlease_close(t);
        _exit(rc == 0 ? 0 : (rc < 0 && rc > -255 ? -rc : 255));
    }
    int st = tu_wait(p, 20000);
    if (st == -1)
        fail_msg("shmlease_open(%s, flags %#x) hung for 20 s", name, flags);
    if (WIFSIGNALED(st))
        fail_msg("shmlease_open(%s, flags %#x) crashed the process: signal %d (%s)", name,
                 flags, WTERMSIG(st), strsignal(WTERMSIG(st)));
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 99)
        fail_msg("the opened table misbehaved (see the child's message)");
    return -WEXITSTATUS(st);
}

/* Writes BYTES as a segment file, then: RW and READONLY opens are -EPROTO and
 * leave the file's bytes unchanged. */
static void expect_eproto_unchanged(const char *what, const void *bytes, size_t len)
{
    const char *name = tu_name("garbage");
    char p[512];
    tu_shm_path(p, sizeof p, name);
    unsigned char *mine = malloc(len ? len : 1);
    memcpy(mine, bytes, len);
    TU_RC(tu_adopt_lock_file(name, mine, len), 0);
    TU_RC(tu_write_file(p, mine, len, 0600), 0);
    bytes = mine;
    const uint32_t flag_sets[] = { 0, SHMLEASE_OPEN_READONLY, SHMLEASE_OPEN_NOCREATE };
    for (size_t k = 0; k < 3; k++) {
        int rc = open_in_child(name, flag_sets[k], 0);
        if (rc != -EPROTO)
            fail_msg("%s: shmlease_open(flags %#x) returned %d (%s), expected -EPROTO", what,
                     flag_sets[k], rc, shmlease_errname(rc));
        size_t now_len = 0;
        unsigned char *now = tu_read_file(p, &now_len);
        assert_non_null(now);
        if (now_len != len || memcmp(now, bytes, len) != 0)
            fail_msg("%s: the segment's bytes changed after a refused open (flags %#x)", what,
                     flag_sets[k]);
        free(now);
    }
    free(mine);
}

static void fill_random(unsigned char *b, size_t n, unsigned seed)
{
    uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)x;
    }
}

static void test_open_random_bytes_is_eproto_and_unchanged(void **state)
{
    (void)state;
    real_table r = make_real_table(64);
    unsigned char *b = malloc(r.len);
    for (unsigned seed = 1; seed <= 3; seed++) {
        fill_random(b, r.len, seed);
        expect_eproto_unchanged("random bytes, table size", b, r.len);
    }
    fill_random(b, 4096, 7);
    expect_eproto_unchanged("random bytes, 4096", b, 4096);
    fill_random(b, 100, 8);
    expect_eproto_unchanged("random bytes, 100", b, 100);
    free(b);
    free(r.bytes);
}

static void test_open_text_file_is_eproto_and_unchanged(void **state)
{
    (void)state;
    char text[8192];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = "some other program's data\n"[i % 26];
    expect_eproto_unchanged("text file", text, sizeof text);
}

static void test_open_flipped_magic_is_eproto_and_unchanged(void **state)
{
    (void)state;
    real_table r = make_real_table(64);
    for (int byte = 0; byte < 8; byte++) {
        for (int fix = 0; fix < 2; fix++) {
            unsigned char *b = copy_of(&r);
            b[HOFF(magic) + (size_t)byte] ^= 0x20;
            if (fix)
                fix_checksum(b);
            char what[96];
            snprintf(what, sizeof what, "magic byte %d flipped%s", byte,
                     fix ? ", checksum recomputed" : "");
            expect_eproto_unchanged(what, b, r.len);
            free(b);
        }
    }
    free(r.bytes);
}

static void test_open_byteswapped_magic_is_eproto_and_unchanged(void **state)
{
    (void)state;
    real_table r = make_real_table(64);
    for (int fix = 0; fix < 2; fix++) {
        unsigned char *b = copy_of(&r);
        put_u64(b, HOFF(magic), SHM_MAGIC_SWAPPED);
        if (fix)
            fix_checksum(b);
        expect_eproto_unchanged(fix ? "byte-swapped magic, checksum recomputed"
                                    : "byte-swapped magic", b, r.len);
        free(b);
    }
    /* a whole header of the other byte order */
    unsigned char *b = copy_of(&r);
    for (size_t off = 0; off < HOFF(checksum); off += 8) {
        for (int i = 0; i < 4; i++) {
            unsigned char x = b[off + (size_t)i];
            b[off + (size_t)i] = b[off + 7 - (size_t)i];
            b[off + 7 - (size_t)i] = x;
        }
    }
    expect_eproto_unchanged("header words byte-swapped", b, r.len);
    free(b);
    free(r.bytes);
}

static void test_open_other_format_word_is_eproto_and_unchanged(void **state)
{
    (void)state;
    real_table r = make_real_table(64);
    const uint64_t fw = shm_format_word();
    const struct { const char *what; uint64_t word; } other[] = {
        { "layout version + 1", fw + ((uint64_t)1 << 56) },
        { "another pthread_mutex_t size", fw ^ ((uint64_t)8 << 48) },
        { "a 32-bit build (pointer size 4)", (fw & ~((uint64_t)0xf << 44)) | ((uint64_t)4 << 44) },
        { "another entry size", fw + ((uint64_t)1 << 32) },
        { "another key size", fw ^ ((uint64_t)0x80 << 8) },
        { "another metadata size", fw + 1 },
        { "zero", 0 },
    };
    for (size_t k = 0; k < sizeof other / sizeof other[0]; k++) {
        for (int fix = 0; fix < 2; fix++) {
            unsigned char *b = copy_of(&r);
            put_u64(b, HOFF(format), other[k].word);
            if (fix)
                fix_checksum(b);
            char what[128];
            snprintf(what, sizeof what, "format word: %s%s", other[k].what,
                     fix ? ", checksum recomputed" : "");
            expect_eproto_unchanged(what, b, r.len);
            free(b);
        }
    }
    free(r.bytes);
}

static void test_open_truncated_segment_is_eproto_and_unchanged(void **state)
{
    (void)state;
    real_table r = make_real_table(64);
    expect_eproto_unchanged("truncated to half", r.bytes, r.len / 2);
    expect_eproto_unchanged("truncated to the header", r.bytes, SHM_HEADER_SIZE);
    expect_eproto_unchanged("truncated to one page less", r.bytes, r.len - 4096);
    expect_eproto_unchanged("truncated by one byte", r.bytes, r.len - 1);
    expect_eproto_unchanged("truncated inside the header (100 bytes)", r.bytes, 100);
    expect_eproto_unchanged("truncated to 10 bytes", r.bytes, 10);
    free(r.bytes);
}

static void test_open_inconsistent_header_fields_are_eproto_and_unchanged(void **state)
{
    (void)state;
    const uint32_t cap = 1237;
    real_table r = make_real_table(cap);
    const uint32_t caps[] = { cap * 2, cap + 1, cap - 1, cap / 2, 0, SHMLEASE_CAPACITY_MAX + 1,
                              UINT32_MAX };
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        for (int fix = 0; fix < 2; fix++) {
            /* cap +- 1 can fit the same pages: with a recomputed checksum that
             * header is consistent, so only the stale checksum must catch it */
            if (fix && (caps[k] == cap + 1 || caps[k] == cap - 1))
                continue;
            unsigned char *b = copy_of(&r);
            put_u32(b, HOFF(capacity), caps[k]);
            if (fix)
                fix_checksum(b);
            char what[128];
            snprintf(what, sizeof what, "capacity %u in a file made for %u%s", caps[k], cap,
                     fix ? ", checksum recomputed" : "");
            expect_eproto_unchanged(what, b, r.len);
            free(b);
        }
    }
    struct { const char *what; size_t off; int width; uint64_t delta; } fields[] = {
        { "header_size", HOFF(header_size), 4, 8 },
        { "nbuckets", HOFF(nbuckets), 4, 1 },
        { "nbuckets halved", HOFF(nbuckets), 4, 0 },
        { "reg_slots", HOFF(reg_slots), 4, 1 },
        { "entry_size", HOFF(entry_size), 4, 8 },
        { "reg_off", HOFF(reg_off), 8, 64 },
        { "index_off", HOFF(index_off), 8, 8 },
        { "entries_off", HOFF(entries_off), 8, (uint64_t)-64 },
        { "total_size beyond the file", HOFF(total_size), 8, 4096 },
        { "total_size below the layout", HOFF(total_size), 8, (uint64_t)-4096 },
    };
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
        unsigned char *b = copy_of(&r);
        if (fields[k].width == 4) {
            uint32_t v;
            memcpy(&v, b + fields[k].off, 4);
            v = fields[k].delta ? v + (uint32_t)fields[k].delta : v / 2;
            put_u32(b, fields[k].off, v);
        } else {
            uint64_t v;
            memcpy(&v, b + fields[k].off, 8);
            put_u64(b, fields[k].off, v + fields[k].delta);
        }
        fix_checksum(b);
        char what[128];
        snprintf(what, sizeof what, "header field %s changed, checksum recomputed",
                 fields[k].what);
        expect_eproto_unchanged(what, b, r.len);
        free(b);
    }
    /* an immutable field changed without the checksum following */
    unsigned char *b = copy_of(&r);
    b[HOFF(epoch)] ^= 1;
    expect_eproto_unchanged("epoch changed under the checksum", b, r.len);
    free(b);
    free(r.bytes);
}

/* Our own magic and format without READY: what a creator that died during
 * initialisation leaves. A writer rebuilds it; a reader refuses it. */
static void test_open_half_built_header_rw_reinitialises_ro_is_eproto(void **state)
{
    (void)state;
    real_table r = make_real_table(64);
    unsigned char *b = copy_of(&r);
    put_u32(b, HOFF(init_state), 0);
    const char *name = tu_name("halfbuilt");
    char p[512];
    tu_shm_path(p, sizeof p, name);
    TU_RC(tu_adopt_lock_file(name, b, r.len), 0);
    TU_RC(tu_write_file(p, b, r.len, 0600), 0);
    TU_RC(open_in_child(name, SHMLEASE_OPEN_READONLY, 0), -EPROTO);
    size_t len = 0;
    unsigned char *now = tu_read_file(p, &len);
    assert_non_null(now);
    TU_EQU(len, r.len);
    assert_memory_equal(now, b, r.len);
    free(now);
    TU_RC(open_in_child(name, 0, 1), 0);
    shmlease_table *t = tu_open(name, NULL);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "some-key", &i), -ENOENT);
    TU_RC(open_in_child(name, SHMLEASE_OPEN_READONLY, 1), 0);
    free(b);
    free(r.bytes);
}

static void test_open_real_copy_is_accepted(void **state)
{
    (void)state;
    /* the control for the corruption tests: the unmodified copy opens */
    real_table r = make_real_table(64);
    const char *name = tu_name("copy");
    char p[512];
    tu_shm_path(p, sizeof p, name);
    TU_RC(tu_write_file(p, r.bytes, r.len, 0600), 0);
    /* A plain copy names the original's lock file: read-only is fine, a
     * read-write open refuses it and leaves it alone ... */
    TU_RC(open_in_child(name, SHMLEASE_OPEN_READONLY, 1), 0);
    TU_RC(open_in_child(name, 0, 1), -EPROTO);
    size_t len = 0;
    unsigned char *now = tu_read_file(p, &len);
    assert_non_null(now);
    assert_true(len == r.len && memcmp(now, r.bytes, len) == 0);
    free(now);
    /* ... and with its own lock file, the copy opens read-write too. */
    const char *name2 = tu_name("copy");
    write_segment(name2, r.bytes, r.len);
    TU_RC(open_in_child(name2, SHMLEASE_OPEN_READONLY, 1), 0);
    TU_RC(open_in_child(name2, 0, 1), 0);
    free(r.bytes);
}

/* The size of NAME's lock file, or -1 if there is none. Its size is the
 * creation record: 1 while a creator builds the segment, else 0. */
static long lock_file_size(const char *name)
{
    char lp[256];
    snprintf(lp, sizeof lp, "/dev/shm/shmlease-lk.%s", name);
    struct stat st;
    return stat(lp, &st) == 0 ? (long)st.st_size : -1;
}

/* NAME's lock file as a creator leaves it when it dies before its segment
 * is READY: the creation record set. */
static void leave_creation_record(const char *name)
{
    char lp[256];
    snprintf(lp, sizeof lp, "/dev/shm/shmlease-lk.%s", name);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    TU_TRUE(fd >= 0 && ftruncate(fd, 1) == 0, "lock file %s: %s", lp, strerror(errno));
    close(fd);
}

/* A file put at a table's name that no creator of ours left (no creation
 * record): every open refuses it (-EPROTO: a read-write open, NOCREATE,
 * read-only), writes nothing and leaves no lock file behind, and so does
 * an existing lock file without the record; shmlease_unlink refuses it
 * too. With the record, a writer builds the table. */
static void expect_foreign_unless_recorded(const char *name, const unsigned char *bytes, size_t len)
{
    char p[512];
    tu_shm_path(p, sizeof p, name);
    TU_RC(tu_write_file(p, bytes, len, 0600), 0);
    for (int with_lock_file = 0; with_lock_file < 2; with_lock_file++) {
        if (with_lock_file)
            TU_RC(tu_adopt_lock_file(name, NULL, 0), 0);    /* empty: no record */
        const uint32_t flag_sets[] = { 0, SHMLEASE_OPEN_NOCREATE, SHMLEASE_OPEN_READONLY };
        for (size_t k = 0; k < 3; k++)
            TU_TRUE(open_in_child(name, flag_sets[k], 0) == -EPROTO, "%zu-byte file, flags %#x, lock file %d: "
                    "not -EPROTO", len, flag_sets[k], with_lock_file);
        TU_RC(shmlease_unlink(name), -EPROTO);
        size_t n = 99;
        unsigned char *now = tu_read_file(p, &n);
        assert_non_null(now);
        TU_EQU(n, len);
        assert_true(len == 0 || memcmp(now, bytes, len) == 0);
        free(now);
        TU_EQ(lock_file_size(name), with_lock_file ? 0 : -1);
    }
    /* What a creator that died leaves: a reader still waits for READY in
     * vain, a writer builds the table and clears the record. */
    leave_creation_record(name);
    TU_RC(open_in_child(name, SHMLEASE_OPEN_READONLY, 0), -EPROTO);
    TU_RC(open_in_child(name, 0, 1), 0);
    TU_EQ(lock_file_size(name), 0);
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "x", 60000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(open_in_child(name, SHMLEASE_OPEN_READONLY, 1), 0);
}

static void test_open_zero_length_file_is_eproto_unless_a_creator_left_it(void **state)
{
    (void)state;
    expect_foreign_unless_recorded(tu_name("empty"), (const unsigned char *)"", 0);
}

static void test_open_zero_filled_file_is_eproto_unless_a_creator_left_it(void **state)
{
    (void)state;
    /* exactly what a creator leaves when it dies after sizing the segment */
    real_table r = make_real_table(SHMLEASE_DEFAULT_CAPACITY);
    unsigned char *z = calloc(1, r.len);
    expect_foreign_unless_recorded(tu_name("zeros"), z, r.len);
    free(z);
    free(r.bytes);
}

/* shmlease_unlink removes tables only: a table of another format (our
 * magic: made by another version) and a half-built one with its creator's
 * record go; a directory, a FIFO, text, and a zero header over a foreign
 * body stay, with -EPROTO. */
static void test_unlink_removes_tables_only(void **state)
{
    (void)state;
    real_table r = make_real_table(64);
    const char *other = tu_name("otherformat");
    unsigned char *b = copy_of(&r);
    put_u64(b, HOFF(format), shm_format_word() ^ 0x100);
    write_segment(other, b, r.len);
    TU_RC(open_in_child(other, 0, 0), -EPROTO);
    TU_RC(shmlease_unlink(other), 0);
    assert_false(tu_shm_exists(other));
    TU_EQ(lock_file_size(other), -1);
    free(b);

    const char *half = tu_name("halfrecorded");
    char p[512];
    tu_shm_path(p, sizeof p, half);
    TU_RC(tu_write_file(p, "", 0, 0600), 0);
    leave_creation_record(half);
    TU_RC(shmlease_unlink(half), 0);
    assert_false(tu_shm_exists(half));
    TU_EQ(lock_file_size(half), -1);

    const char *dir = tu_name("dir"), *fifo = tu_name("fifo"), *text = tu_name("text");
    const char *zh = tu_name("zeroheader");
    char pd[512], pf[512], pt[512], pz[512];
    tu_shm_path(pd, sizeof pd, dir);
    tu_shm_path(pf, sizeof pf, fifo);
    tu_shm_path(pt, sizeof pt, text);
    tu_shm_path(pz, sizeof pz, zh);
    TU_TRUE(mkdir(pd, 0700) == 0, "mkdir: %s", strerror(errno));
    TU_TRUE(mkfifo(pf, 0600) == 0, "mkfifo: %s", strerror(errno));
    TU_RC(tu_write_file(pt, "not a table\n", 12, 0600), 0);
    unsigned char *zb = copy_of(&r);
    memset(zb, 0, sizeof(struct shm_header));
    TU_RC(tu_write_file(pz, zb, r.len, 0600), 0);
    leave_creation_record(zh);                       /* the record alone is not enough */
    const char *names[] = { dir, fifo, text, zh };
    for (size_t i = 0; i < 4; i++) {
        TU_TRUE(shmlease_unlink(names[i]) == -EPROTO, "unlink %s: not -EPROTO", names[i]);
        assert_true(tu_shm_exists(names[i]));
    }
    TU_EQ(lock_file_size(zh), 1);
    struct stat st;
    TU_TRUE(stat(pd, &st) == 0 && S_ISDIR(st.st_mode), "the directory is gone");
    rmdir(pd);
    unlink(pf);
    free(zb);
    free(r.bytes);
}

static int count_visits(const shmlease_info *i, void *arg)
{
    (void)i;
    (*(int *)arg)++;
    return 0;
}

/* Hostile contents below the header: inspection through a read-only handle
 * bounds-checks what it reads and never crashes or hangs. */
static void test_readonly_inspection_survives_corrupted_body(void **state)
{
    (void)state;
    const char *name = tu_name("hostile-src");
    shmlease_table *t = tu_open_cap(name, 64);
    shmlease_lease l;
    char key[32];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        shmlease_acquire_opts o = tu_aopts(60000, 0);
        o.metadata = key;
        o.metadata_len = strlen(key);
        TU_RC(shmlease_acquire(t, key, &o, &l), 0);
        if (i % 3 == 0)
            TU_RC(shmlease_release(t, &l), 0);
    }
    char p[512];
    tu_shm_path(p, sizeof p, name);
    size_t len = 0;
    unsigned char *orig = tu_read_file(p, &len);
    assert_non_null(orig);
    unsigned char *b = malloc(len);
    for (unsigned round = 0; round < 24; round++) {
        memcpy(b, orig, len);
        /* corrupt everything after the first 256 bytes: some rounds lightly,
         * some heavily */
        size_t from = 256 < len ? 256 : len;
        unsigned char *noise = malloc(len);
        fill_random(noise, len, 100 + round);
        size_t step = round < 8 ? 61 : (round < 16 ? 7 : 1);
        for (size_t i = from; i < len; i += step)
            b[i] = noise[i];
        free(noise);
        const char *cname = tu_name("hostile");
        char cp[512];
        tu_shm_path(cp, sizeof cp, cname);
        TU_RC(tu_adopt_lock_file(cname, b, len), 0);
        TU_RC(tu_write_file(cp, b, len, 0600), 0);
        pid_t pid = tu_fork();
        if (pid == 0) {
            shmlease_options o = { 0 };
            o.flags = SHMLEASE_OPEN_READONLY;
            shmlease_table *r = NULL;
            int rc = shmlease_open(cname, &o, &r);
            if (rc != 0)
                _exit(rc == -EPROTO ? 0 : 98);
            shmlease_info info;
            for (int i = 0; i < 40; i++) {
                snprintf(key, sizeof key, "key-%d", i);
                rc = shmlease_inspect(r, key, &info);
                TU_CK(rc == 0 || rc == -ENOENT || rc == -EPROTO);
                if (rc == 0) {
                    TU_CK(info.metadata_len <= SHMLEASE_METADATA_MAX);
                    TU_CK(memchr(info.key, 0, sizeof info.key) != NULL);
                }
            }
            int n = 0;
            rc = shmlease_foreach(r, count_visits, &n);
            TU_CK(rc == 0 || rc == -EPROTO);
            TU_CK(n <= 64 * 2);
            shmlease_stats s;
            rc = shmlease_stats_get(r, &s);
            TU_CK(rc == 0 || rc == -EPROTO);
            shmlease_close(r);
            _exit(0);
        }
        int st = tu_wait(pid, 20000);
        if (st == -1)
            fail_msg("round %u: inspection of a corrupted table hung", round);
        if (WIFSIGNALED(st))
            fail_msg("round %u: inspection of a corrupted table crashed: signal %d (%s)", round,
                     WTERMSIG(st), strsignal(WTERMSIG(st)));
        if (WEXITSTATUS(st) == 98)
            fail_msg("round %u: read-only open of a table with an intact header failed with "
                     "something other than -EPROTO", round);
        TU_EQ(WEXITSTATUS(st), 0);
        size_t nl = 0;
        unsigned char *after = tu_read_file(cp, &nl);
        assert_non_null(after);
        if (nl != len || memcmp(after, b, len) != 0)
            fail_msg("round %u: read-only inspection wrote the segment", round);
        free(after);
    }
    free(b);
    free(orig);
}

/* ---- creator dies during initialisation ------------------------------------ */

static void creator_dies_at(const char *point)
{
    TU_REQUIRE_FAULT_POINTS();
    const char *name = tu_name("initdeath");
    pid_t p = tu_fork();
    if (p == 0) {
        tu_fault_arm(point, SHMLEASE_FAULT_KILL, 1);
        shmlease_table *t = NULL;
        shmlease_open(name, NULL, &t);
        _exit(0); /* not reached when the point fires */
    }
    int st = tu_wait(p, 20000);
    if (!(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        fail_msg("fault point %s was never reached while creating a table", point);
    /* it left its creation record in the lock file: the proof that what
     * lies under the name is its own half-built segment */
    TU_EQ(lock_file_size(name), 1);

    /* the next opener repairs or re-initialises the table, and clears it */
    shmlease_table *t = tu_open(name, NULL);
    TU_EQ(lock_file_size(name), 0);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "k", &i), 0);
    TU_EQ(i.holder_pid, getpid());

    /* and another process sees the exclusion */
    tu_chan c;
    tu_chan_init(&c);
    pid_t q = tu_fork();
    if (q == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease x;
        TU_CK_RC(tu_acquire(u, "k", 60000, 0, &x), -EBUSY);
        tu_up(&c, 1);
        TU_CK_RC(tu_acquire(u, "k", 60000, 10000, &x), 0); /* after the parent's release */
        TU_CK(x.fencing_token > l.fencing_token);
        TU_CK_RC(shmlease_release(u, &x), 0);
        shmlease_close(u);
        _exit(0);
    }
    tu_chan_parent(&c, q);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    TU_RC(shmlease_release(t, &l), 0);
    tu_expect_exit0(q);

    /* a read-only opener accepts the repaired table */
    TU_RC(open_in_child(name, SHMLEASE_OPEN_READONLY, 1), 0);
}

static void test_creator_killed_after_init_lock_next_opener_recovers(void **state)
{
    (void)state;
    creator_dies_at("init.after_lock");
}

static void test_creator_killed_after_fallocate_next_opener_recovers(void **state)
{
    (void)state;
    creator_dies_at("init.after_fallocate");
}

static void test_creator_killed_after_mutexes_next_opener_recovers(void **state)
{
    (void)state;
    creator_dies_at("init.after_mutexes");
}

/* A creator slowed down inside initialisation: a concurrent opener gets the
 * same table, never a half-written one and never a second initialisation. */
static void test_open_during_creators_init_attaches_to_the_same_table(void **state)
{
    (void)state;
    TU_REQUIRE_FAULT_POINTS();
    /* every point of the list inside initialisation, once the file exists
     * (init.after_*; init.lock_file comes before the file is made) */
    static const char *const listed[] = {
#define SHMLEASE_FAULT_POINT(name, description) name,
#include "fault_points.def"
#undef SHMLEASE_FAULT_POINT
    };
    const char *points[sizeof listed / sizeof listed[0]];
    int npoints = 0;
    for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++)
        if (strncmp(listed[i], "init.after_", strlen("init.after_")) == 0)
            points[npoints++] = listed[i];
    TU_EQ(npoints >= 3, 1);
    for (int k = 0; k < npoints; k++) {
        const char *name = tu_name("initrace");
        tu_chan c;
        tu_chan_init(&c);
        pid_t p = tu_fork();
        if (p == 0) {
            tu_chan_child(&c);
            tu_fault_arm(points[k], SHMLEASE_FAULT_SLEEP, 1);
            shmlease_table *t = NULL;
            TU_CK_RC(shmlease_open(name, NULL, &t), 0);
            shmlease_lease l;
            int rc = tu_acquire(t, "k", 60000, 0, &l);
            TU_CK(rc == 0 || rc == -EBUSY);
            tu_up(&c, rc == 0 ? (int64_t)l.fencing_token : 0);
            tu_up(&c, (int64_t)tu_stats(t).table_epoch);
            tu_down_recv(&c);
            shmlease_close(t);
            _exit(0);
        }
        tu_chan_parent(&c, p);
        /* the file appears as the creator starts; open while it sleeps inside */
        if (!TU_WAIT_FOR(tu_shm_exists(name), 5000))
            fail_msg("%s: the creator never created the file", points[k]);
        shmlease_table *t = tu_open(name, NULL);
        shmlease_lease l;
        int rc = tu_acquire(t, "k", 60000, 0, &l);
        assert_true(rc == 0 || rc == -EBUSY);
        int64_t child_tok = tu_up_recv(&c, 10000);
        int64_t child_epoch = tu_up_recv(&c, 10000);
        if ((rc == 0) == (child_tok != 0))
            fail_msg("%s: parent rc %d, child token %lld: exactly one must hold the key "
                     "(two initialisations?)", points[k], rc, (long long)child_tok);
        TU_EQU(tu_stats(t).table_epoch, (uint64_t)child_epoch);
        tu_down(&c, 0);
        tu_expect_exit0(p);
        tu_close(t);
    }
}

/* A read-write open of a READY table needs no init lock (first-opener.md
 * section 3.1): it attaches at once while another process holds that lock
 * (an unlink or an initialiser stopped in it), and it is the same table.
 * A segment that is not READY still waits for the lock: -ETIMEDOUT, and
 * the file is left as it was. */
static void test_open_of_ready_table_does_not_wait_for_the_init_lock(void **state)
{
    (void)state;
    const char *name = tu_name("nolock");
    shmlease_table *a = tu_open(name, NULL);
    char lk[512];
    snprintf(lk, sizeof lk, "/dev/shm/shmlease-lk.%s", name);
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {                      /* holds the init lock until told */
        tu_chan_child(&c);
        int fd = open(lk, O_RDWR | O_CLOEXEC);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = SHM_LK_INIT_BYTE, .l_len = 1};
        TU_CK(fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl) == 0);
        tu_up(&c, 1);
        tu_down_recv(&c);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    shmlease_options o = {.open_timeout_ms = 300};
    shmlease_table *b = NULL;
    uint64_t t0 = tu_mono_ns();
    TU_RC(shmlease_open(name, &o, &b), 0);
    assert_true(tu_mono_ns() - t0 < 250000000ull);
    TU_EQU(tu_stats(a).table_epoch, tu_stats(b).table_epoch);
    shmlease_lease l;
    TU_RC(tu_acquire(b, "k", 10000, 0, &l), 0);
    TU_RC(tu_acquire(a, "k", 10000, 0, &l), -EBUSY);
    tu_close(b);

    /* the same, not READY: the opener must wait for the lock */
    char sp[512];
    tu_shm_path(sp, sizeof sp, name);
    size_t len;
    unsigned char *bytes = tu_read_file(sp, &len);
    assert_non_null(bytes);
    uint32_t zero = 0;
    memcpy(bytes + HOFF(init_state), &zero, sizeof zero);
    const char *other = tu_name("nolock2");
    char osp[512], olk[512];
    tu_shm_path(osp, sizeof osp, other);
    snprintf(olk, sizeof olk, "/dev/shm/shmlease-lk.%s", other);
    TU_RC(tu_write_file(osp, bytes, len, 0600), 0);
    assert_int_equal(link(lk, olk), 0);  /* the lock file the copy names, still locked */
    TU_RC(shmlease_open(other, &o, &b), -ETIMEDOUT);
    size_t len2;
    unsigned char *after = tu_read_file(osp, &len2);
    assert_true(after && len2 == len && memcmp(after, bytes, len) == 0);
    free(after);
    free(bytes);
    tu_down(&c, 0);
    tu_expect_exit0(p);
    tu_close(a);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_open_real_copy_is_accepted),
        TU_TEST(test_open_random_bytes_is_eproto_and_unchanged),
        TU_TEST(test_open_text_file_is_eproto_and_unchanged),
        TU_TEST(test_open_flipped_magic_is_eproto_and_unchanged),
        TU_TEST(test_open_byteswapped_magic_is_eproto_and_unchanged),
        TU_TEST(test_open_other_format_word_is_eproto_and_unchanged),
        TU_TEST(test_open_truncated_segment_is_eproto_and_unchanged),
        TU_TEST(test_open_inconsistent_header_fields_are_eproto_and_unchanged),
        TU_TEST(test_open_half_built_header_rw_reinitialises_ro_is_eproto),
        TU_TEST(test_open_zero_length_file_is_eproto_unless_a_creator_left_it),
        TU_TEST(test_open_zero_filled_file_is_eproto_unless_a_creator_left_it),
        TU_TEST(test_unlink_removes_tables_only),
        TU_TEST(test_readonly_inspection_survives_corrupted_body),
        TU_TEST(test_creator_killed_after_init_lock_next_opener_recovers),
        TU_TEST(test_creator_killed_after_fallocate_next_opener_recovers),
        TU_TEST(test_creator_killed_after_mutexes_next_opener_recovers),
        TU_TEST(test_open_during_creators_init_attaches_to_the_same_table),
        TU_TEST(test_open_of_ready_table_does_not_wait_for_the_init_lock),
    };
    return TU_RUN(tests);
}
