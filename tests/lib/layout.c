/*
 * Test helpers that read the segment layout of src/internal.h: lock files
 * named in a segment image, and table consistency checks. The only part of
 * the test library that depends on the library's internals.
 */
#include "internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

int tu_adopt_lock_file(const char *name, void *buf, size_t len)
{
    char lp[256];
    snprintf(lp, sizeof lp, "/dev/shm/shmlease-lk.%s", name);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) != 0 ? -errno : 0;
    close(fd);
    if (rc)
        return rc;
    if (len < sizeof(struct shm_header))
        return 0;
    struct shm_header h;
    memcpy(&h, buf, sizeof h);
    if (h.magic != SHM_MAGIC)
        return 0;                       /* not a header: left as it is */
    int sum_ok = h.checksum == (uint32_t)shmlease__header_checksum(&h);
    h.lock_ino = (uint64_t)st.st_ino;
    h.lock_dev = (uint64_t)st.st_dev;
    if (sum_ok)
        h.checksum = (uint32_t)shmlease__header_checksum(&h);
    memcpy(buf, &h, sizeof h);
    return 0;
}

int tu_write_segment(const char *name, void *buf, size_t len)
{
    int rc = tu_adopt_lock_file(name, buf, len);
    if (rc)
        return rc;
    char path[256];
    tu_shm_path(path, sizeof path, name);
    return tu_write_file(path, buf, len, 0600);
}

int tu_check_structure(shmlease_table *t, char *why, size_t whylen)
{
    struct shm_header *h = t->hdr;
    uint32_t cap = t->capacity;
    uint32_t *refs = calloc(cap, sizeof *refs);
    uint8_t *onfree = calloc(cap, 1);
    int rc = -1;
    uint32_t live = 0;
#define BAD(...)                                                                   \
    do {                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                        \
        goto out;                                                                  \
    } while (0)
    if (!refs || !onfree)
        BAD("out of memory");
    if (h->index_seq & 1)
        BAD("index_seq odd (%u): a bucket change was left half-way", h->index_seq);
    if (h->index_intent.op != SHM_INTENT_NONE)
        BAD("index intent %u (entry %u) left behind", h->index_intent.op, h->index_intent.a);
    for (uint32_t b = 0; b < t->nbuckets; b++) {
        uint64_t bw = t->buckets[b];
        if (!bw)
            continue;
        uint32_t ei = bw_entry(bw);
        if (ei >= cap)
            BAD("bucket %u points at entry %u beyond capacity %u", b, ei, cap);
        if (sw_kind(t->entries[ei].state) == SW_RETIRED)
            BAD("bucket %u points at retired entry %u", b, ei);
        if ((bw >> 32) != (t->entries[ei].hash >> 32))
            BAD("bucket %u hash tag differs from entry %u's hash", b, ei);
        refs[ei]++;
    }
    for (uint32_t i = 0; i < cap; i++) {
        struct shm_entry *e = &t->entries[i];
        if (sw_kind(e->state) == SW_RETIRED)
            continue;
        live++;
        if (e->key_seq & 1)
            BAD("entry %u: key_seq odd", i);
        if (e->key_len < 1 || e->key_len > SHMLEASE_KEY_MAX)
            BAD("entry %u: key_len %u", i, e->key_len);
        if (refs[i] != 1)
            BAD("entry %u (key '%.*s') is referenced by %u buckets", i, (int)e->key_len, e->key, refs[i]);
        char key[SHMLEASE_KEY_MAX + 1];
        memcpy(key, e->key, e->key_len);
        key[e->key_len] = 0;
        struct keybuf kb;
        if (shmlease__key_prepare(t, key, &kb) != 0)
            BAD("entry %u: bad key", i);
        /* A shared holder's slot has the key's hash salted by its number. */
        uint32_t slot = shmlease__slot_of(t, kb.w, kb.len, e->hash);
        if (slot)
            shmlease__slot_key(&kb, slot - 1, &kb);
        if (kb.hash != e->hash)
            BAD("entry %u: stored hash is neither the key's hash nor one of its slots'", i);
        uint32_t seq;
        long f = shmlease__lookup(t, &kb, &seq);
        if (f != (long)i)
            BAD("entry %u (key '%s'): lookup finds %ld (duplicate key or unreachable)", i, key, f);
    }
    uint32_t nfree = 0;
    for (uint32_t f = h->free_head; f != 0; f = t->entries[f - 1].next_free) {
        if (f - 1 >= cap)
            BAD("free list points beyond capacity (%u)", f);
        if (onfree[f - 1])
            BAD("free list has a cycle at entry %u", f - 1);
        onfree[f - 1] = 1;
        if (sw_kind(t->entries[f - 1].state) != SW_RETIRED)
            BAD("entry %u is on the free list but not retired", f - 1);
        nfree++;
    }
    if (h->live_count != live)
        BAD("live_count %u, but %u entries are not retired", h->live_count, live);
    if (nfree + live != cap)
        BAD("free %u + live %u != capacity %u: an entry is lost", nfree, live, cap);
    rc = 0;
out:
#undef BAD
    free(refs);
    free(onfree);
    return rc;
}

void tu_check_usable(const char *name, const char *const *keys, uint32_t capacity)
{
    shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
    shmlease_table *t = NULL;
    TU_RC(shmlease_open(name, &o, &t), 0);
    shmlease_stats st;
    TU_RC(shmlease_stats_get(t, &st), 0);
    TU_TRUE(st.capacity == capacity, "capacity %u, expected %u", st.capacity, capacity);
    TU_TRUE(st.live_keys <= capacity, "live_keys %u > capacity %u", st.live_keys, capacity);

    /* A first structural change runs any pending recovery (inherited mutex). */
    shmlease_lease probe;
    int rc = tu_acquire(t, "usable-probe", 10000, 0, &probe);
    TU_TRUE(rc == 0 || rc == -ENOSPC, "probe acquire: %s", shmlease_errname(rc));
    if (rc == 0)
        TU_RC(shmlease_release(t, &probe), 0);

    char why[256];
    TU_TRUE(tu_check_structure(t, why, sizeof why) == 0, "table structure: %s", why);

    /* Keys left by dead processes: free at once; inspect never fails badly. */
    size_t nk = 0;
    while (keys && keys[nk])
        nk++;
    shmlease_lease *held = calloc(nk + 1, sizeof *held);
    for (size_t i = 0; i < nk; i++) {
        shmlease_info info;
        rc = shmlease_inspect(t, keys[i], &info);
        TU_TRUE(rc == 0 || rc == -ENOENT, "inspect %s: %s", keys[i], shmlease_errname(rc));
        if (rc == 0 && !info.in_grace)
            TU_TRUE(info.holder_alive != 1, "key %s: holder %d reported alive", keys[i], info.holder_pid);
        TU_RC(tu_acquire(t, keys[i], 10000, 0, &held[i]), 0);
        TU_RC(shmlease_inspect(t, keys[i], &info), 0);
        TU_TRUE(info.holder_pid == getpid() && info.holder_alive == 1 &&
                 info.fencing_token == held[i].fencing_token,
                 "key %s after acquire: pid %d alive %d token %llu/%llu", keys[i], info.holder_pid,
                 info.holder_alive, (unsigned long long)info.fencing_token,
                 (unsigned long long)held[i].fencing_token);
        if (i > 0)          /* only the first stays held, for the exclusion check */
            TU_RC(shmlease_release(t, &held[i]), 0);
    }

    /* Exclusion with another process, both ways. */
    int p2c[2], c2p[2];
    assert_int_equal(pipe(p2c), 0);
    assert_int_equal(pipe(c2p), 0);
    pid_t pid = tu_fork_alarm(60);
    if (pid == 0) {
        close(p2c[1]);
        close(c2p[0]);
        shmlease_table *ct;
        TU_CK_RC(shmlease_open(name, &o, &ct), 0);
        shmlease_lease l;
        if (nk)
            TU_CK_RC(tu_acquire(ct, keys[0], 10000, 0, &l), -EBUSY);
        TU_CK_RC(tu_acquire(ct, "usable-child", 60000, 0, &l), 0);
        char c = 1;
        TU_CK(write(c2p[1], &c, 1) == 1);
        TU_CK(read(p2c[0], &c, 1) >= 0);     /* until the parent says so (or EOF) */
        _exit(0);                          /* dies holding usable-child */
    }
    close(p2c[0]);
    close(c2p[1]);
    char c;
    TU_TRUE(read(c2p[0], &c, 1) == 1, "usable check child did not report");
    shmlease_lease cl;
    TU_RC(tu_acquire(t, "usable-child", 10000, 0, &cl), -EBUSY);
    close(p2c[1]);
    tu_expect_exit0_within(pid, 20000);
    close(c2p[0]);
    TU_RC(tu_acquire(t, "usable-child", 10000, 0, &cl), 0);   /* dead holder: at once */
    TU_RC(shmlease_release(t, &cl), 0);

    if (nk)
        TU_RC(shmlease_release(t, &held[0]), 0);
    free(held);

    /* Capacity exactly right. */
    shmlease_lease *cap = calloc(capacity, sizeof *cap);
    char k[64];
    for (uint32_t i = 0; i < capacity; i++) {
        snprintf(k, sizeof k, "usable-cap-%u", i);
        rc = tu_acquire(t, k, 60000, 0, &cap[i]);
        TU_TRUE(rc == 0, "filling to capacity: key %u of %u: %s", i, capacity, shmlease_errname(rc));
    }
    TU_RC(tu_acquire(t, "usable-cap-extra", 60000, 0, &cl), -ENOSPC);
    TU_RC(shmlease_release(t, &cap[0]), 0);
    TU_RC(tu_acquire(t, "usable-cap-extra", 60000, 0, &cap[0]), 0);
    for (uint32_t i = 0; i < capacity; i++)
        TU_RC(shmlease_release(t, &cap[i]), 0);
    free(cap);
    TU_TRUE(tu_check_structure(t, why, sizeof why) == 0, "table structure at the end: %s", why);
    shmlease_close(t);
}
