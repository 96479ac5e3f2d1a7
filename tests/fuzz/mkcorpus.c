/*
 * Makes the seed corpora of the fuzz targets:
 *   mkcorpus SEGMENT_DIR API_DIR
 * Segment seeds: a real segment made by the library (capacity 4, a held
 * lease with metadata, a grace period, a free key) in the sparse "SLZ"
 * encoding of fuzz_segment.c, and variants of it (checksum-fixed header
 * edits, forced header, hostile body, half-made, foreign bytes). API seeds:
 * short programs in fuzz_api.c's encoding. The files are committed; rerun
 * this after a layout change (the format word changes).
 */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void put(const char *dir, const char *name, const void *buf, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

/* Sparse encoding: "SLZ" flags size {off len bytes}... over runs of non-zero bytes. */
static size_t slz(const uint8_t *b, size_t n, uint8_t flags, uint8_t *out, size_t cap)
{
    size_t o = 0;
    memcpy(out, "SLZ", 3);
    out[3] = flags;
    uint32_t n32 = (uint32_t)n;
    memcpy(out + 4, &n32, 4);
    o = 8;
    size_t i = 0;
    while (i < n) {
        if (!b[i]) {
            i++;
            continue;
        }
        size_t j = i, zeros = 0;
        while (j < n && zeros < 16 && j - i < 60000) {
            zeros = b[j] ? 0 : zeros + 1;
            j++;
        }
        size_t len = j - i - zeros;
        if (o + 6 + len > cap) {
            fprintf(stderr, "slz: too big\n");
            exit(1);
        }
        uint32_t off = (uint32_t)i;
        uint16_t l16 = (uint16_t)len;
        memcpy(out + o, &off, 4);
        memcpy(out + o + 4, &l16, 2);
        memcpy(out + o + 6, b + i, len);
        o += 6 + len;
        i = j;
    }
    return o;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SEGMENT_DIR API_DIR\n", argv[0]);
        return 2;
    }
    const char *sd = argv[1], *ad = argv[2];
    mkdir(sd, 0755);
    mkdir(ad, 0755);

    char name[64];
    snprintf(name, sizeof name, "mkcorpus-%d", (int)getpid());
    shmlease_options o = {.capacity = 4};
    shmlease_table *t;
    if (shmlease_open(name, &o, &t) != 0)
        return 1;
    shmlease_acquire_opts ao = {.ttl_ms = 10ull * 365 * 86400 * 1000, .metadata = "owner=seed", .metadata_len = 10};
    shmlease_lease l;
    shmlease_acquire(t, "held", &ao, &l);
    shmlease_acquire(t, "grace", &ao, &l);
    shmlease_release_after(t, &l, 10ull * 365 * 86400 * 1000);
    shmlease_acquire(t, "free", &ao, &l);
    shmlease_release(t, &l);
    char path[256];
    snprintf(path, sizeof path, "/dev/shm/shmlease.%s", name);
    int fd = open(path, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    size_t n = (size_t)st.st_size;
    uint8_t *seg = malloc(n), *work = malloc(n), *out = malloc(1 << 20);
    if (read(fd, seg, n) != (ssize_t)n)
        return 1;
    close(fd);
    shmlease_close(t);
    shmlease_unlink(name);
    struct shm_header *h;
    size_t len;

    len = slz(seg, n, 0, out, 1 << 20);
    put(sd, "valid.slz", out, len);
    /* Header edits with the checksum fixed by the harness (flag 1). */
    memcpy(work, seg, n);
    h = (struct shm_header *)work;
    h->capacity = 1000;
    put(sd, "capacity-mismatch.slz", out, slz(work, n, 1, out, 1 << 20));
    memcpy(work, seg, n);
    h->magic = SHM_MAGIC_SWAPPED;
    put(sd, "swapped-magic.slz", out, slz(work, n, 1, out, 1 << 20));
    memcpy(work, seg, n);
    h->format = (shm_format_word() & ~((UINT64_C(0xff) << 48) | (UINT64_C(0xf) << 44))) |
                (UINT64_C(24) << 48) | (UINT64_C(4) << 44);
    put(sd, "layout-32bit.slz", out, slz(work, n, 1, out, 1 << 20));
    memcpy(work, seg, n);
    h->format = (shm_format_word() & ~(UINT64_C(0xff) << 56)) | ((uint64_t)(SHM_LAYOUT_VERSION + 1) << 56);
    put(sd, "layout-next-version.slz", out, slz(work, n, 1, out, 1 << 20));
    /* Half-made: our magic and format, not READY (the read-write opener rebuilds it). */
    memcpy(work, seg, n);
    h->init_state = 0;
    put(sd, "half-made.slz", out, slz(work, n, 0, out, 1 << 20));
    /* Only the body, header forced valid by the harness (flag 3). */
    memcpy(work, seg, n);
    memset(work + offsetof(struct shm_header, checksum), 0, 8);
    put(sd, "forced-header.slz", out, slz(work, n, 3, out, 1 << 20));
    /* Hostile body: corrupt lengths, owner, seqlocks, buckets, free list. */
    memcpy(work, seg, n);
    {
        struct shm_entry *e = (struct shm_entry *)(work + h->entries_off);
        uint64_t *bk = (uint64_t *)(work + h->index_off);
        e[0].key_len = 0xffffu;
        e[0].meta_len = 0xfff0u;
        e[1].state = sw_held(4095, SW_DEADLINE_MASK);
        e[1].claim = 3;
        e[1].pub_seq = 1;
        e[2].key_seq = 5;
        e[3].next_free = 4;
        h->free_head = 0xffff0000u;
        h->index_seq = 7;
        for (uint32_t i = 0; i < h->nbuckets; i += 2)
            bk[i] = UINT64_C(0xffffffff00000000) | 0xfffffff0u;
    }
    put(sd, "hostile-body.slz", out, slz(work, n, 0, out, 1 << 20));
    /* Raw inputs: a bad magic, a foreign text, a truncated header page, nothing. */
    memcpy(work, seg, n);
    memcpy(work, "NOTLEASE", 8);
    put(sd, "raw-wrong-magic", work, SHM_HEADER_SIZE);
    put(sd, "raw-truncated-header-page", seg, SHM_HEADER_SIZE);
    put(sd, "raw-foreign-text", "#!/bin/sh\necho this is not a shmlease table\n", 45);
    put(sd, "raw-empty", "", 0);

    /* API programs (see fuzz_api.c for the encoding). */
    static const uint8_t a1[] = {4, 0, 0, 0, 5, 0, 4, 'a', 'b', 'c', 'd', 0, 2, 0, 6, 3, 0, 7, 0, 8, 9};
    static const uint8_t a2[] = {1, 0, 0, 0, 5, 0, 0, 1, 0, 1, 1, 5, 0, 0, 1, 0, 1, 5, 3, 0, 9};
    static const uint8_t a3[] = {2, 0, 0, 0, 3, 0, 0, 2, 10, 200, 2, 2, 6, 5, 2, 9, 0, 1, 0, 5, 4, 0, 1};
    static const uint8_t a4[] = {8, 0, 0, 200, 140, 'l', 'o', 'n', 'g', 0, 0, 200, 0, 0, 0, 0, 0, 5, 9, 0, 3};
    static const uint8_t a5[] = {3, 0, 0, 0, 6, 0, 0, 0, 4, 0, 1, 4, 0, 0, 1, 0, 3, 12, 3, 1, 2, 1, 6, 9};
    static const uint8_t a6[] = {5, 11, 0, 1, 5, 0, 0, 11, 1, 2, 0, 3, 10, 13, 0, 0x30, 5, 3, 1, 13, 0, 0x25, 1, 2, 0};
    static const uint8_t a7[] = {2, 0, 0, 0, 5, 8, 0, 0, 1, 1, 0, 5, 3, 0, 9, 10, 255, 7, 0, 0, 1, 0, 5, 0, 0, 1};
    static const uint8_t a8[] = {16, 0, 0, 3, 1, 0, 149, 0, 0, 4, 0, 6, 0, 0, 0, 0, 5, 7, 0, 0, 0, 5, 9, 0, 0};
    const struct { const char *n; const uint8_t *b; size_t l; } api[] = {
        {"acquire-release-break", a1, sizeof a1}, {"enospc-cap1", a2, sizeof a2},
        {"grace-clock", a3, sizeof a3},           {"long-key", a4, sizeof a4},
        {"reopen-stale", a5, sizeof a5},          {"with-corrupt", a6, sizeof a6},
        {"expiry-takeover", a7, sizeof a7},       {"invalid-opts", a8, sizeof a8},
    };
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++)
        put(ad, api[i].n, api[i].b, api[i].l);
    printf("corpora written to %s and %s\n", sd, ad);
    free(seg);
    free(work);
    free(out);
    return 0;
}
