/* Keys and hashing (see key.h). */
#include "key.h"

#include <errno.h>
#include <string.h>

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 32;
    x *= UINT64_C(0xd6e8feb86659fd93);
    x ^= x >> 32;
    x *= UINT64_C(0xd6e8feb86659fd93);
    x ^= x >> 32;
    return x;
}

/* Key hash seeded with the table's random epoch, so that dynamic keys chosen
 * by an outsider cannot be made to collide in every table. */
static uint64_t key_hash(uint64_t seed, const uint64_t *w, uint32_t len)
{
    uint64_t h = seed ^ (len * UINT64_C(0x9e3779b97f4a7c15));
    uint32_t nw = (len + 7) / 8;
    for (uint32_t i = 0; i < nw; i++)
        h = mix64(h ^ w[i]) + UINT64_C(0x9e3779b97f4a7c15);
    return mix64(h);
}

int shmlease__key_prepare(const shmlease_table *t, const char *key, struct keybuf *kb)
{
    if (!key || !key[0])
        return -EINVAL;
    size_t n = strnlen(key, SHMLEASE_KEY_MAX + 1);
    if (n > SHMLEASE_KEY_MAX)
        return -ENAMETOOLONG;
    /* Only the words the key spans are meaningful (hash, compare); the last
     * one is zero padded. Zeroing all 16 words costs more than the rest. */
    kb->w[(n - 1) / 8] = 0;
    memcpy(kb->w, key, n);
    kb->len = (uint32_t)n;
    kb->hash = key_hash(t->epoch, kb->w, kb->len);
    return 0;
}


int shmlease__key_matches(const struct shm_entry *e, const struct keybuf *kb, uint32_t seq)
{
    if (seq & 1)
        return 0;
    if (ld_relaxed(&e->key_len) != kb->len ||
        ld_relaxed(&e->hash) != kb->hash)
        return 0;
    uint32_t nw = (kb->len + 7) / 8;
    for (uint32_t i = 0; i < nw; i++)
        if (shmlease__key_word(e, i) != kb->w[i])
            return 0;
    fence_acquire();
    return ld_relaxed(&e->key_seq) == seq;
}
