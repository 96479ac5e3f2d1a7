/* Tables: shmlease_open / shmlease_close / shmlease_unlink, names, options, modes. */
#include "testutil.h"
#include "internal.h"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

static shmlease_info info_of(shmlease_table *t, const char *key, int *rc)
{
    shmlease_info i;
    memset(&i, 0, sizeof i);
    *rc = shmlease_inspect(t, key, &i);
    return i;
}

static void test_open_creates_missing_table_then_attaches(void **state)
{
    (void)state;
    const char *name = tu_name("create");
    assert_false(tu_shm_exists(name));
    shmlease_table *a = tu_open(name, NULL);
    assert_true(tu_shm_exists(name)); /* tools can list tables in /dev/shm */
    shmlease_table *b = tu_open(name, NULL);

    /* the second open is the same table: a lease taken through one is seen
     * and excluded through the other */
    shmlease_lease l;
    TU_RC(tu_acquire(a, "k", 10000, 0, &l), 0);
    int rc;
    shmlease_info i = info_of(b, "k", &rc);
    TU_RC(rc, 0);
    TU_EQU(i.fencing_token, l.fencing_token);
    TU_EQ(i.holder_pid, getpid());
    shmlease_lease l2;
    TU_RC(tu_acquire(b, "k", 10000, 0, &l2), -EBUSY);
    TU_EQU(tu_stats(a).table_epoch, tu_stats(b).table_epoch);
    TU_RC(shmlease_release(a, &l), 0);
}

static void test_open_nocreate_missing_is_enoent(void **state)
{
    (void)state;
    const char *name = tu_name("nocreate");
    shmlease_options o = { 0 };
    o.flags = SHMLEASE_OPEN_NOCREATE;
    shmlease_table *t = NULL;
    TU_RC(shmlease_open(name, &o, &t), -ENOENT);
    assert_false(tu_shm_exists(name));
    /* and attaches when present */
    shmlease_table *c = tu_open(name, NULL);
    shmlease_table *n = tu_open(name, &o);
    TU_EQU(tu_stats(c).table_epoch, tu_stats(n).table_epoch);
}

/* NOCREATE and no segment is -ENOENT whatever is under the lock file's
 * name: a stale lock file (removed on the way: nothing can name it), a
 * directory or a FIFO (left alone). */
static void test_open_nocreate_without_segment_is_enoent_whatever_the_lock_file(void **state)
{
    (void)state;
    shmlease_options o = { 0 };
    o.flags = SHMLEASE_OPEN_NOCREATE;
    for (int kind = 0; kind < 3; kind++) {
        const char *name = tu_name("nocreatelk");
        char lk[256];
        snprintf(lk, sizeof lk, "/dev/shm/shmlease-lk.%s", name);
        if (kind == 0) {
            int fd = open(lk, O_RDWR | O_CREAT | O_EXCL, 0600);
            assert_true(fd >= 0);
            close(fd);
        } else if (kind == 1) {
            assert_int_equal(mkdir(lk, 0700), 0);
        } else {
            assert_int_equal(mkfifo(lk, 0600), 0);
        }
        shmlease_table *t = NULL;
        TU_RC(shmlease_open(name, &o, &t), -ENOENT);
        assert_null(t);
        assert_false(tu_shm_exists(name));
        struct stat st;
        int present = lstat(lk, &st) == 0;
        assert_int_equal(present, kind != 0);
        if (kind == 1)
            rmdir(lk);
        else
            unlink(lk);
    }
}

static void test_open_excl_existing_is_eexist(void **state)
{
    (void)state;
    const char *name = tu_name("excl");
    shmlease_options o = { 0 };
    o.flags = SHMLEASE_OPEN_EXCL;
    shmlease_table *t = tu_open(name, &o); /* missing: EXCL creates */
    assert_non_null(t);
    shmlease_table *t2 = NULL;
    TU_RC(shmlease_open(name, &o, &t2), -EEXIST);
    /* the existing table is untouched */
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 10000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

static void test_open_excl_with_nocreate_is_einval(void **state)
{
    (void)state;
    const char *name = tu_name("exclnocreate");
    shmlease_options o = { 0 };
    o.flags = SHMLEASE_OPEN_EXCL | SHMLEASE_OPEN_NOCREATE;
    shmlease_table *t = NULL;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);
    assert_false(tu_shm_exists(name));
}

static int count_cb(const shmlease_info *i, void *arg)
{
    (void)i;
    (*(int *)arg)++;
    return 0;
}

static int ro_fn_calls;
static int ro_fn(const shmlease_lease *l, void *arg)
{
    (void)l;
    (void)arg;
    ro_fn_calls++;
    return 0;
}

static void test_readonly_handle_lease_calls_are_eperm(void **state)
{
    (void)state;
    const char *name = tu_name("ro");
    shmlease_table *rw = tu_open(name, NULL);
    shmlease_acquire_opts ao = tu_aopts(10000, 0);
    ao.metadata = "meta";
    ao.metadata_len = 4;
    shmlease_lease l;
    TU_RC(shmlease_acquire(rw, "held", &ao, &l), 0);
    shmlease_stats before = tu_stats(rw);

    shmlease_options o = { 0 };
    o.flags = SHMLEASE_OPEN_READONLY;
    shmlease_table *ro = tu_open(name, &o);

    shmlease_lease x;
    TU_RC(tu_acquire(ro, "free", 1000, 0, &x), -EPERM);
    TU_RC(tu_acquire(ro, "held", 1000, 0, &x), -EPERM);
    shmlease_lease copy = l;
    TU_RC(shmlease_renew(ro, &copy, 1000), -EPERM);
    copy = l;
    TU_RC(shmlease_release(ro, &copy), -EPERM);
    copy = l;
    TU_RC(shmlease_release_after(ro, &copy, 1000), -EPERM);
    TU_RC(shmlease_break(ro, "held"), -EPERM);
    ro_fn_calls = 0;
    TU_RC(shmlease_with(ro, "free", &ao, ro_fn, NULL), -EPERM);
    TU_EQ(ro_fn_calls, 0);

    /* inspection works on the read-only handle */
    shmlease_info i;
    TU_RC(shmlease_inspect(ro, "held", &i), 0);
    TU_EQU(i.fencing_token, l.fencing_token);
    TU_EQ(i.holder_pid, getpid());
    TU_EQU(i.metadata_len, 4);
    assert_memory_equal(i.metadata, "meta", 4);
    TU_RC(shmlease_inspect(ro, "free", &i), -ENOENT);
    int n = 0;
    TU_RC(shmlease_foreach(ro, count_cb, &n), 0);
    TU_EQ(n, 1);
    shmlease_stats s = tu_stats(ro);
    TU_EQU(s.acquisitions, before.acquisitions);
    TU_EQU(s.table_epoch, before.table_epoch);
    TU_EQU(s.fencing_counter, l.fencing_token);

    /* nothing the read-only handle did changed the table */
    shmlease_stats after = tu_stats(rw);
    TU_EQU(after.acquisitions, before.acquisitions);
    TU_EQU(after.fencing_counter, before.fencing_counter);
    TU_EQU(after.held, 1);
    TU_RC(shmlease_check(rw, &l), 0);
    TU_RC(shmlease_renew(rw, &l, 10000), 0);
    TU_RC(shmlease_release(rw, &l), 0);
}

static void test_readonly_open_of_missing_table_is_enoent(void **state)
{
    (void)state;
    const char *name = tu_name("romissing");
    shmlease_options o = { 0 };
    o.flags = SHMLEASE_OPEN_READONLY;
    shmlease_table *t = NULL;
    TU_RC(shmlease_open(name, &o, &t), -ENOENT);
    assert_false(tu_shm_exists(name));
}

static void test_unlink_while_open_handle_keeps_working(void **state)
{
    (void)state;
    const char *name = tu_name("unlink");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease a, b;
    TU_RC(tu_acquire(t, "a", 10000, 0, &a), 0);
    TU_RC(shmlease_unlink(name), 0);
    assert_false(tu_shm_exists(name));

    /* the old handle keeps working on the old (unlinked) table */
    TU_RC(tu_acquire(t, "b", 10000, 0, &b), 0);
    TU_GT(b.fencing_token, a.fencing_token);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "a", &i), 0);
    TU_RC(shmlease_renew(t, &a, 10000), 0);

    /* a new open creates a fresh, independent table */
    shmlease_table *n = tu_open(name, NULL);
    assert_true(tu_shm_exists(name));
    TU_RC(shmlease_inspect(n, "a", &i), -ENOENT);
    shmlease_lease na;
    TU_RC(tu_acquire(n, "a", 10000, 0, &na), 0);
    assert_true(tu_stats(n).table_epoch != tu_stats(t).table_epoch);
    TU_RC(shmlease_release(t, &a), 0);
    TU_RC(shmlease_release(t, &b), 0);
    TU_RC(shmlease_release(n, &na), 0);

    TU_RC(shmlease_unlink(name), 0);
    TU_RC(shmlease_unlink(name), -ENOENT);
    TU_RC(shmlease_unlink("bad/name"), -EINVAL);
    TU_RC(shmlease_unlink(""), -EINVAL);
    TU_RC(shmlease_unlink(NULL), -EINVAL);
}

static unsigned shm_mode(const char *name)
{
    char p[512];
    struct stat st;
    tu_shm_path(p, sizeof p, name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail_msg("open(%s): %s", p, strerror(errno));
    assert_int_equal(fstat(fd, &st), 0);
    close(fd);
    return (unsigned)(st.st_mode & 07777);
}

static void test_open_mode_honoured_despite_umask(void **state)
{
    (void)state;
    umask(077);
    const char *name = tu_name("mode644");
    shmlease_options o = { 0 };
    o.mode = 0644;
    tu_open(name, &o);
    TU_EQ(shm_mode(name), 0644);

    umask(0);
    const char *def = tu_name("modedefault");
    tu_open(def, NULL);
    TU_EQ(shm_mode(def), 0600);

    umask(022);
    const char *m666 = tu_name("mode666");
    o.mode = 0666;
    tu_open(m666, &o);
    TU_EQ(shm_mode(m666), 0666);

    /* the mode is used only when creating */
    o.mode = 0640;
    tu_open(name, &o);
    TU_EQ(shm_mode(name), 0644);
}

static int shm_file_count_named(const char *name)
{
    return tu_shm_exists(name) ? 1 : 0;
}

static void test_open_bad_names_are_einval_and_create_nothing(void **state)
{
    (void)state;
    const char *base = tu_name("bad"); /* unique prefix, never opened */
    char space[256], ctrl[256], slash[256], uni[256], lead_slash[256], star[256];
    char n201[202], n200[201];
    snprintf(space, sizeof space, "%s y", base);
    snprintf(ctrl, sizeof ctrl, "%s\x01", base);
    snprintf(slash, sizeof slash, "%s/b", base);
    snprintf(uni, sizeof uni, "%s\xc3\xa9", base);
    snprintf(lead_slash, sizeof lead_slash, "/%s", base);
    snprintf(star, sizeof star, "%s*", base);
    memset(n201, 'x', 201);
    memcpy(n201, base, strlen(base));
    n201[201] = 0;
    int dot_existed = tu_shm_exists(".") + tu_shm_exists("..") + tu_shm_exists("");

    const char *bad[] = { "", ".", "..", "a/b", "x y", "\x01", space, ctrl, slash,
                          uni, lead_slash, star, n201, "tab\tx", "nl\n" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        shmlease_table *t = (shmlease_table *)0x1;
        int rc = shmlease_open(bad[k], NULL, &t);
        if (rc != -EINVAL)
            fail_msg("shmlease_open(\"%s\") returned %d (%s), expected -EINVAL", bad[k], rc,
                     shmlease_errname(rc));
        if (rc == 0)
            shmlease_close(t);
        TU_RC(shmlease_unlink(bad[k]), -EINVAL);
    }
    shmlease_table *t = NULL;
    TU_RC(shmlease_open(NULL, NULL, &t), -EINVAL);

    TU_EQ(shm_file_count_named(space), 0);
    TU_EQ(shm_file_count_named(ctrl), 0);
    TU_EQ(shm_file_count_named(uni), 0);
    TU_EQ(shm_file_count_named(star), 0);
    TU_EQ(shm_file_count_named(n201), 0);
    TU_EQ(tu_shm_exists(".") + tu_shm_exists("..") + tu_shm_exists(""), dot_existed);

    /* boundaries that are valid: 200 bytes, every allowed character */
    memset(n200, 'y', 200);
    memcpy(n200, base, strlen(base));
    n200[200] = 0;
    tu_unlink_later(n200);
    shmlease_table *ok = tu_open(n200, NULL);
    assert_true(tu_shm_exists(n200));
    tu_close(ok);
    char chars[256];
    snprintf(chars, sizeof chars, "%s.AZaz09_-.x", base);
    tu_unlink_later(chars);
    ok = tu_open(chars, NULL);
    tu_close(ok);
    /* dots are allowed inside a name; only "." and ".." themselves are not */
    char dots[256];
    snprintf(dots, sizeof dots, "..%s..", base);
    tu_unlink_later(dots);
    ok = tu_open(dots, NULL);
    tu_close(ok);
    TU_RC(shmlease_unlink(dots), 0);
}

static void test_open_bad_options_are_einval(void **state)
{
    (void)state;
    const char *name = tu_name("badopts");
    shmlease_options o;
    shmlease_table *t = NULL;

    memset(&o, 0, sizeof o);
    o.capacity = SHMLEASE_CAPACITY_MAX + 1;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);
    o.capacity = UINT32_MAX;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);

    memset(&o, 0, sizeof o);
    o.mode = 01777;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);
    o.mode = 04600;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);
    o.mode = 01000;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);

    memset(&o, 0, sizeof o);
    o.flags = 1u << 5;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);
    o.flags = 1u << 31;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);

    assert_false(tu_shm_exists(name));

    /* unknown flags are refused on attach too, not only on create */
    tu_open(name, NULL);
    o.flags = 1u << 7;
    TU_RC(shmlease_open(name, &o, &t), -EINVAL);
}

static void test_close_null_is_noop(void **state)
{
    (void)state;
    shmlease_close(NULL);
}

static void test_close_releases_the_handles_leases(void **state)
{
    (void)state;
    const char *name = tu_name("close");
    shmlease_table *a = tu_open(name, NULL);
    shmlease_table *b = tu_open(name, NULL);
    shmlease_lease l, x;
    TU_RC(tu_acquire(a, "k1", 60000, 0, &l), 0);
    TU_RC(tu_acquire(a, "k2", 60000, 0, &l), 0);
    TU_RC(tu_acquire(b, "k1", 60000, 0, &x), -EBUSY);
    tu_close(a);
    TU_RC(tu_acquire(b, "k1", 60000, 0, &x), 0);
    TU_RC(tu_acquire(b, "k2", 60000, 0, &x), 0);

    /* across processes: a live process that closed its handle holds nothing */
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *t = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &t), 0);
        shmlease_lease cl;
        TU_CK_RC(tu_acquire(t, "k3", 60000, 0, &cl), 0);
        tu_up(&c, 1);
        tu_down_recv(&c);
        shmlease_close(t);
        tu_up(&c, 2);
        tu_down_recv(&c); /* stay alive until the parent looked */
        _exit(0);
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    TU_RC(tu_acquire(b, "k3", 60000, 0, &x), -EBUSY);
    tu_down(&c, 0);
    TU_EQ(tu_up_recv(&c, 10000), 2);
    TU_RC(tu_acquire(b, "k3", 60000, 0, &x), 0);
    tu_down(&c, 0);
    tu_expect_exit0(p);
}

static void test_two_handles_in_one_process_are_distinct_owners(void **state)
{
    (void)state;
    const char *name = tu_name("twohandles");
    shmlease_table *a = tu_open(name, NULL);
    shmlease_table *b = tu_open(name, NULL);
    shmlease_lease la, lb;
    TU_RC(tu_acquire(a, "k", 60000, 0, &la), 0);
    TU_RC(tu_acquire(b, "k", 60000, 0, &lb), -EBUSY);
    TU_RC(tu_acquire(b, "k", 60000, 100, &lb), -ETIMEDOUT);
    TU_RC(shmlease_release(a, &la), 0);
    TU_RC(tu_acquire(b, "k", 60000, 0, &lb), 0);
    TU_RC(tu_acquire(a, "k", 60000, 0, &la), -EBUSY);
    TU_RC(shmlease_release(b, &lb), 0);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n++;
    closedir(d);
    return n;
}

/* Close frees every lease of the handle, however each was claimed: keys it
 * inserted, free keys it took, an expired lease it took over; and leaves
 * every other handle's leases alone, including in a table whose index was
 * changed by retirements meanwhile. */
static void test_close_frees_every_claim_and_only_its_own(void **state)
{
    (void)state;
    const char *name = tu_name("closeall");
    shmlease_options o = {.capacity = 56};      /* 61 keys: 5 free ones get retired */
    shmlease_table *a = tu_open(name, &o);
    shmlease_table *b = tu_open(name, &o);
    shmlease_lease l;
    char key[32];
    for (int i = 0; i < 40; i++) {              /* inserted */
        snprintf(key, sizeof key, "ins-%d", i);
        TU_RC(tu_acquire(a, key, 60000, 0, &l), 0);
        if (i % 2 == 0)
            TU_RC(shmlease_release(a, &l), 0);  /* FREE entries, still indexed */
    }
    for (int i = 0; i < 40; i += 4) {           /* free keys taken again */
        snprintf(key, sizeof key, "ins-%d", i);
        TU_RC(tu_acquire(a, key, 60000, 0, &l), 0);
    }
    TU_RC(tu_acquire(b, "expired", 1, 0, &l), 0);
    tu_sleep_ms(5);
    TU_RC(tu_acquire(a, "expired", 60000, 0, &l), 0);   /* a takeover */
    for (int i = 0; i < 10; i++) {              /* b's own, kept */
        snprintf(key, sizeof key, "b-%d", i);
        TU_RC(tu_acquire(b, key, 60000, 0, &l), 0);
    }
    /* b fills the table: the free entries of a's released keys are retired
     * and reused, which moves buckets around in the index */
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "churn-%d", i);
        TU_RC(tu_acquire(b, key, 60000, 0, &l), 0);
    }
    tu_close(a);
    /* Freed by the close itself: not merely takeable because a's registry
     * lock is gone (inspection would still list a key held by a dead
     * handle, and its waiters would learn of it only at their next look). */
    shmlease_info info;
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "ins-%d", i);
        TU_RC(shmlease_inspect(b, key, &info), -ENOENT);
    }
    TU_RC(shmlease_inspect(b, "expired", &info), -ENOENT);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "b-%d", i);
        TU_EQ(tu_inspect_ok(b, key).holder_pid, getpid());
    }
}

static void test_open_close_many_times_leaks_nothing(void **state)
{
    (void)state;
    /* more opens than SHMLEASE_HANDLES_MAX: close must free its registry slot */
    const char *name = tu_name("reopen");
    shmlease_table *keep = tu_open_cap(name, 16);
    int fds0 = count_fds();
    for (int i = 0; i < SHMLEASE_HANDLES_MAX + 200; i++) {
        shmlease_table *t = NULL;
        int rc = shmlease_open(name, NULL, &t);
        if (rc != 0)
            fail_msg("open #%d returned %d (%s)", i, rc, shmlease_errname(rc));
        if (i % 512 == 0) {
            shmlease_lease l;
            TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
        }
        shmlease_close(t);
    }
    TU_EQ(count_fds(), fds0);
    shmlease_lease l;
    TU_RC(tu_acquire(keep, "k", 60000, 0, &l), 0);
    TU_RC(shmlease_release(keep, &l), 0);
}

/* SHMLEASE_HANDLES_MAX handles attached at once; one more is -EUSERS (from the
 * open that registers it, or from its first lease call); closing one makes room. */
/* A segment is mapped at one of the process's few places (handles.c) when
 * one is free, else anywhere: more handles than places all work, each its
 * own mapping; and a place taken by a mapping that is not the library's is
 * never replaced. */
static void test_segment_places_are_used_but_never_taken_over(void **state)
{
    (void)state;
    const char *name = tu_name("place");
    enum { N = 9 };
    shmlease_table *t[N];
    shmlease_lease l[N];
    for (int i = 0; i < N; i++) {
        t[i] = tu_open(name, NULL);
        for (int j = 0; j < i; j++)
            assert_true(t[i]->map + t[i]->map_size <= t[j]->map || t[j]->map + t[j]->map_size <= t[i]->map);
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        TU_RC(tu_acquire(t[i], key, 10000, 0, &l[i]), 0);
    }
    uint8_t *placed = NULL;
    for (int i = 0; i < N; i++) {
        if (t[i]->placed && !placed)
            placed = t[i]->map;
        tu_close(t[i]);
    }
    if (!placed)
        skip();                        /* no place on this system (MAP_FIXED_NOREPLACE) */
    /* someone else maps there meanwhile: the next open goes elsewhere */
    uint8_t *mine = mmap(placed, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    assert_true(mine == placed);
    memset(mine, 0x5a, 4096);
    shmlease_table *a = tu_open(name, NULL);
    assert_true(a->map + a->map_size <= mine || mine + 4096 <= a->map);
    TU_RC(tu_acquire(a, "k0", 10000, 0, &l[0]), 0);
    for (int i = 0; i < 4096; i++)
        assert_int_equal(mine[i], 0x5a);
    tu_close(a);
    munmap(mine, 4096);
}

static void test_handles_beyond_the_maximum_are_eusers(void **state)
{
    (void)state;
    const char *name = tu_name("eusers");
    static shmlease_table *h[SHMLEASE_HANDLES_MAX + 2];
    memset(h, 0, sizeof h);
    shmlease_options o = { 0 };
    o.capacity = 1;
    int attached = 0, rc = 0;
    for (int n = 0; n < SHMLEASE_HANDLES_MAX + 2; n++) {
        rc = shmlease_open(name, &o, &h[n]);
        if (rc == 0) {
            shmlease_lease l;
            rc = tu_acquire(h[n], "k", 60000, 0, &l);
            if (rc == -EBUSY || (n == 0 && rc == 0))
                rc = 0;
        }
        if (rc != 0)
            break;
        attached++;
    }
    if (rc != -EUSERS)
        fail_msg("after %d attached handles: %d (%s), expected -EUSERS at %d", attached, rc,
                 shmlease_errname(rc), SHMLEASE_HANDLES_MAX);
    TU_EQ(attached, SHMLEASE_HANDLES_MAX);
    TU_EQ(tu_stats(h[0]).attached, SHMLEASE_HANDLES_MAX);
    /* closing one makes room for another */
    shmlease_close(h[1]);
    h[1] = NULL;
    shmlease_close(h[attached]); /* the refused one, if its open succeeded */
    h[attached] = NULL;
    shmlease_table *x = tu_open(name, &o);
    shmlease_lease l;
    TU_RC(tu_acquire(x, "k", 60000, 0, &l), -EBUSY);
    for (int i = 0; i < SHMLEASE_HANDLES_MAX + 2; i++)
        shmlease_close(h[i]);
    TU_EQ(tu_stats(x).attached, 1);
    TU_RC(tu_acquire(x, "k", 60000, 0, &l), 0); /* h[0]'s lease went with it */
}

/* ---- whose table: SHMLEASE_OPEN_SHARE and SHMLEASE_OPEN_GROUP -------------- */

/* Users for the tests below: uids and gids no account uses, so that a
 * child made with tu_fork() can become them (setgroups, setgid, setuid)
 * when the test runs as root. The kernel needs no account for a uid. */
typedef struct test_users {
    uid_t owner, member, stranger;    /* member is in the group, stranger is not */
    gid_t group, owner_gid, member_gid, stranger_gid, other_group;
} test_users;

static uint32_t unused_id(uint32_t from, int is_group)
{
    for (uint32_t id = from;; id++)
        if (is_group ? getgrgid((gid_t)id) == NULL : getpwuid((uid_t)id) == NULL)
            return id;
}

static test_users make_users(void)
{
    if (geteuid() != 0)
        TU_SKIP("needs root to become other users in a child (setuid)");
    test_users u;
    u.owner = unused_id(61000, 0);
    u.member = unused_id(u.owner + 1, 0);
    u.stranger = unused_id(u.member + 1, 0);
    u.group = unused_id(61000, 1);
    u.owner_gid = unused_id(u.group + 1, 1);
    u.member_gid = unused_id(u.owner_gid + 1, 1);
    u.stranger_gid = unused_id(u.member_gid + 1, 1);
    u.other_group = unused_id(u.stranger_gid + 1, 1);
    return u;
}

/* In a tu_fork() child: become UID with primary group GID and, if
 * SUPPLEMENTARY is not (gid_t)-1, that supplementary group. */
static void become(uid_t uid, gid_t gid, gid_t supplementary)
{
    int n = supplementary == (gid_t)-1 ? 0 : 1;
    TU_CK(setgroups((size_t)n, &supplementary) == 0);
    TU_CK(setgid(gid) == 0);
    TU_CK(setuid(uid) == 0);
    TU_CK(geteuid() == uid);
}

static int open_rc(const char *name, uint32_t flags)
{
    shmlease_options o = { 0 };
    o.flags = flags;
    shmlease_table *t = NULL;
    int rc = shmlease_open(name, &o, &t);
    shmlease_close(t);
    return rc;
}

/* The owner (in a child) creates NAME with MODE, group u->group. */
static void create_as_owner(const test_users *u, const char *name, uint32_t mode)
{
    pid_t p = tu_fork();
    if (p == 0) {
        become(u->owner, u->owner_gid, u->group);
        shmlease_options o = { 0 };
        o.flags = SHMLEASE_OPEN_EXCL | SHMLEASE_OPEN_GROUP;
        o.mode = mode;
        o.gid = u->group;
        o.capacity = 16;
        shmlease_table *t = NULL;
        TU_CK_RC(shmlease_open(name, &o, &t), 0);
        shmlease_close(t);
        _exit(0);
    }
    tu_expect_exit0(p);
}

static struct stat stat_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        fail_msg("stat(%s): %s", path, strerror(errno));
    return st;
}

/* A table made by another user is refused to a read-write open without
 * SHARE (-EPERM, whatever its mode: the refusal does not depend on the
 * mode), and attached with SHARE when the modes let the caller in; a
 * read-only open needs no SHARE. Root is no exception to the first rule. */
static void test_another_users_table_needs_share(void **state)
{
    (void)state;
    test_users u = make_users();
    const char *name = tu_name("shared660");
    create_as_owner(&u, name, 0660);
    /* The owner holds a lease on it, from a live process. */
    tu_chan c;
    tu_chan_init(&c);
    pid_t holder = tu_fork();
    if (holder == 0) {
        tu_chan_child(&c);
        become(u.owner, u.owner_gid, u.group);
        shmlease_table *t = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &t), 0);       /* its own table: no SHARE */
        shmlease_lease l;
        TU_CK_RC(tu_acquire(t, "owners", 600000, 0, &l), 0);
        tu_up(&c, 1);
        tu_down_recv(&c);
        _exit(0);
    }
    tu_chan_parent(&c, holder);
    TU_EQ(tu_up_recv(&c, 20000), 1);

    pid_t p = tu_fork();
    if (p == 0) {
        become(u.member, u.member_gid, u.group);
        TU_CK_RC(open_rc(name, 0), -EPERM);
        TU_CK_RC(open_rc(name, SHMLEASE_OPEN_NOCREATE), -EPERM);
        TU_CK_RC(open_rc(name, SHMLEASE_OPEN_READONLY), 0);
        shmlease_options o = { 0 };
        o.flags = SHMLEASE_OPEN_SHARE | SHMLEASE_OPEN_NOCREATE;
        shmlease_table *t = NULL;
        TU_CK_RC(shmlease_open(name, &o, &t), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(t, "members", 60000, 0, &l), 0);
        TU_CK_RC(tu_acquire(t, "owners", 60000, 0, &l), -EBUSY);
        shmlease_info i;
        TU_CK_RC(shmlease_inspect(t, "owners", &i), 0);
        TU_CK(i.holder_alive == 1);
        shmlease_close(t);
        _exit(0);
    }
    tu_expect_exit0(p);
    /* root: the same rule */
    TU_RC(open_rc(name, 0), -EPERM);
    TU_RC(open_rc(name, SHMLEASE_OPEN_SHARE), 0);
    TU_RC(open_rc(name, SHMLEASE_OPEN_READONLY), 0);
    /* a stranger: -EPERM without SHARE, -EACCES with it (0660: not for
     * others), -EACCES read-only */
    p = tu_fork();
    if (p == 0) {
        become(u.stranger, u.stranger_gid, (gid_t)-1);
        TU_CK_RC(open_rc(name, 0), -EPERM);
        TU_CK_RC(open_rc(name, SHMLEASE_OPEN_SHARE), -EACCES);
        TU_CK_RC(open_rc(name, SHMLEASE_OPEN_SHARE | SHMLEASE_OPEN_NOCREATE), -EACCES);
        TU_CK_RC(open_rc(name, SHMLEASE_OPEN_READONLY), -EACCES);
        TU_CK_RC(open_rc(name, SHMLEASE_OPEN_READONLY | SHMLEASE_OPEN_SHARE), -EACCES);
        _exit(0);
    }
    tu_expect_exit0(p);
    /* Nobody's refused open changed anything: same files, same modes. */
    char sp[256], lp[256];
    tu_shm_path(sp, sizeof sp, name);
    snprintf(lp, sizeof lp, "/dev/shm/shmlease-lk.%s", name);
    struct stat ss = stat_of(sp), ls = stat_of(lp);
    TU_EQ(ss.st_uid, u.owner);
    TU_EQ(ss.st_mode & 07777, 0660);
    TU_EQ(ls.st_mode & 07777, 0660);
    TU_EQ(ls.st_size, 0);
    tu_down(&c, 1);
    tu_expect_exit0(holder);
    tu_note("share: another user's 0660 table: member -EPERM without SHARE, attached with it; "
            "stranger -EPERM / -EACCES; root -EPERM / attached; read-only needs no SHARE");
}

/* With SHARE the kernel's verdict on both files decides: a group with read
 * only (0640) gets -EACCES read-write and attaches read-only; a lock file
 * narrower than its segment (someone's chmod) refuses the group too. */
static void test_share_attaches_only_where_both_modes_let_the_caller_write(void **state)
{
    (void)state;
    test_users u = make_users();
    const char *ro = tu_name("shared640");
    create_as_owner(&u, ro, 0640);
    const char *narrow = tu_name("narrowlock");
    create_as_owner(&u, narrow, 0660);
    char lp[256];
    snprintf(lp, sizeof lp, "/dev/shm/shmlease-lk.%s", narrow);
    TU_TRUE(chmod(lp, 0600) == 0, "chmod %s: %s", lp, strerror(errno));
    pid_t p = tu_fork();
    if (p == 0) {
        become(u.member, u.member_gid, u.group);
        TU_CK_RC(open_rc(ro, SHMLEASE_OPEN_SHARE), -EACCES);
        TU_CK_RC(open_rc(ro, SHMLEASE_OPEN_READONLY), 0);
        TU_CK_RC(open_rc(narrow, SHMLEASE_OPEN_SHARE), -EACCES);
        TU_CK_RC(open_rc(narrow, 0), -EPERM);
        _exit(0);
    }
    tu_expect_exit0(p);
    /* The owner's own table needs no SHARE, and SHARE changes nothing for it. */
    p = tu_fork();
    if (p == 0) {
        become(u.owner, u.owner_gid, u.group);
        TU_CK_RC(open_rc(ro, 0), 0);
        TU_CK_RC(open_rc(ro, SHMLEASE_OPEN_SHARE), 0);
        _exit(0);
    }
    tu_expect_exit0(p);
}

/* SHMLEASE_OPEN_GROUP: both files get the group, then the mode; a group the
 * caller is not in is -EPERM and leaves nothing; a creator stopped between
 * the group and the mode has a file that nobody else can open yet. */
static void test_create_with_group_gives_both_files_group_then_mode(void **state)
{
    (void)state;
    test_users u = make_users();
    const char *name = tu_name("grouped");
    create_as_owner(&u, name, 0660);
    char sp[256], lp[256];
    tu_shm_path(sp, sizeof sp, name);
    snprintf(lp, sizeof lp, "/dev/shm/shmlease-lk.%s", name);
    struct stat ss = stat_of(sp), ls = stat_of(lp);
    TU_EQ(ss.st_gid, u.group);
    TU_EQ(ls.st_gid, u.group);
    TU_EQ(ss.st_uid, u.owner);
    TU_EQ(ls.st_uid, u.owner);
    TU_EQ(ss.st_mode & 07777, 0660);
    TU_EQ(ls.st_mode & 07777, 0660);

    const char *refused = tu_name("notmygroup");
    pid_t p = tu_fork();
    if (p == 0) {
        become(u.owner, u.owner_gid, u.group);
        shmlease_options o = { 0 };
        o.flags = SHMLEASE_OPEN_GROUP;
        o.mode = 0660;
        o.gid = u.other_group;
        shmlease_table *t = NULL;
        TU_CK_RC(shmlease_open(refused, &o, &t), -EPERM);
        o.flags = SHMLEASE_OPEN_GROUP | SHMLEASE_OPEN_EXCL;
        TU_CK_RC(shmlease_open(refused, &o, &t), -EPERM);
        _exit(0);
    }
    tu_expect_exit0(p);
    char rp[256], rlp[256];
    tu_shm_path(rp, sizeof rp, refused);
    snprintf(rlp, sizeof rlp, "/dev/shm/shmlease-lk.%s", refused);
    TU_TRUE(access(rp, F_OK) != 0 && access(rlp, F_OK) != 0, "a refused create left files behind");
    /* root may give any group */
    shmlease_options ro = { 0 };
    ro.flags = SHMLEASE_OPEN_GROUP;
    ro.mode = 0660;
    ro.gid = u.other_group;
    const char *rootmade = tu_name("rootgroup");
    shmlease_table *rt = tu_open(rootmade, &ro);
    (void)rt;
    char rtp[256];
    tu_shm_path(rtp, sizeof rtp, rootmade);
    TU_EQ(stat_of(rtp).st_gid, u.other_group);

    /* Stopped between group and mode, at the lock file (1st hit) and at the
     * segment (2nd): the member cannot open the file yet; once the creator
     * goes on, it can attach with SHARE. */
    TU_REQUIRE_FAULT_POINTS();
    for (unsigned hit = 1; hit <= 2; hit++) {
        const char *slow = tu_name("groupwindow");
        pid_t creator = tu_fork();
        if (creator == 0) {
            become(u.owner, u.owner_gid, u.group);
            tu_fault_arm("create.before_mode", SHMLEASE_FAULT_STOP, hit);
            shmlease_options o = { 0 };
            o.flags = SHMLEASE_OPEN_GROUP | SHMLEASE_OPEN_EXCL;
            o.mode = 0660;
            o.gid = u.group;
            shmlease_table *t = NULL;
            TU_CK_RC(shmlease_open(slow, &o, &t), 0);
            shmlease_close(t);
            _exit(0);
        }
        TU_TRUE(tu_wait_stopped(creator, 20000) == 1, "the creator never stopped at create.before_mode");
        char path[256];
        if (hit == 1)
            snprintf(path, sizeof path, "/dev/shm/shmlease-lk.%s", slow);
        else
            tu_shm_path(path, sizeof path, slow);
        struct stat st = stat_of(path);
        TU_EQ(st.st_gid, u.group);
        TU_EQ(st.st_mode & 077, 0);
        pid_t m = tu_fork();
        if (m == 0) {
            become(u.member, u.member_gid, u.group);
            int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
            TU_CK(fd < 0 && errno == EACCES);
            _exit(0);
        }
        tu_expect_exit0(m);
        kill(creator, SIGCONT);
        tu_expect_exit0(creator);
        m = tu_fork();
        if (m == 0) {
            become(u.member, u.member_gid, u.group);
            TU_CK_RC(open_rc(slow, SHMLEASE_OPEN_SHARE | SHMLEASE_OPEN_NOCREATE), 0);
            _exit(0);
        }
        tu_expect_exit0(m);
    }
    tu_note("group: both files owner+group before the mode; a creator stopped in between has files its group "
            "cannot open; a group not the caller's -EPERM, nothing left");
}

/* -EACCES: the caller may not map the segment, even with SHARE; unlink by
 * another user is -EACCES and removes nothing. */
static void test_open_without_permission_is_eacces(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("[  SKIPPED ] needs root to switch to another user\n");
        skip();
    }
    const char *priv = tu_name("eacces");
    tu_open(priv, NULL); /* 0600, root */
    pid_t p = tu_fork();
    if (p == 0) {
        TU_CK(setgroups(0, NULL) == 0);
        TU_CK(setgid(65534) == 0);
        TU_CK(setuid(65534) == 0);
        TU_CK_RC(open_rc(priv, 0), -EPERM);
        TU_CK_RC(open_rc(priv, SHMLEASE_OPEN_SHARE), -EACCES);
        TU_CK_RC(open_rc(priv, SHMLEASE_OPEN_READONLY), -EACCES);
        TU_CK_RC(shmlease_unlink(priv), -EACCES);
        _exit(0);
    }
    tu_expect_exit0(p);
    assert_true(tu_shm_exists(priv));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_open_creates_missing_table_then_attaches),
        TU_TEST(test_open_nocreate_missing_is_enoent),
        TU_TEST(test_open_nocreate_without_segment_is_enoent_whatever_the_lock_file),
        TU_TEST(test_open_excl_existing_is_eexist),
        TU_TEST(test_open_excl_with_nocreate_is_einval),
        TU_TEST(test_readonly_handle_lease_calls_are_eperm),
        TU_TEST(test_readonly_open_of_missing_table_is_enoent),
        TU_TEST(test_unlink_while_open_handle_keeps_working),
        TU_TEST(test_open_mode_honoured_despite_umask),
        TU_TEST(test_open_bad_names_are_einval_and_create_nothing),
        TU_TEST(test_open_bad_options_are_einval),
        TU_TEST(test_close_null_is_noop),
        TU_TEST(test_close_releases_the_handles_leases),
        TU_TEST(test_close_frees_every_claim_and_only_its_own),
        TU_TEST(test_two_handles_in_one_process_are_distinct_owners),
        TU_TEST(test_open_close_many_times_leaks_nothing),
        TU_TEST(test_segment_places_are_used_but_never_taken_over),
        TU_TEST(test_handles_beyond_the_maximum_are_eusers),
        TU_TEST(test_another_users_table_needs_share),
        TU_TEST(test_share_attaches_only_where_both_modes_let_the_caller_write),
        TU_TEST(test_create_with_group_gives_both_files_group_then_mode),
        TU_TEST(test_open_without_permission_is_eacces),
    };
    return TU_RUN(tests);
}
