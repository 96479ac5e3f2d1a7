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

/* The last 1..7 bytes of a key, zero padded: P points to them, N (< 8)
 * bytes, all inside the key (never a read past its end). */
static inline uint64_t tail_word(const unsigned char *p, size_t n)
{
    uint32_t lo, hi;
    if (n >= 4) {                      /* two overlapping 4-byte loads */
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        return (uint64_t)lo | ((uint64_t)hi << (8 * (n - 4)));
    }
    uint64_t v = p[0];                 /* 1..3 bytes */
    if (n > 1)
        v |= (uint64_t)p[1] << 8;
    if (n > 2)
        v |= (uint64_t)p[2] << 16;
    return v;
}

/* Copies key K (N bytes, 1..SHMLEASE_KEY_MAX) into whole words W, the last
 * one zero padded. Byte order is the machine's, as memcpy would give it:
 * the entries hold keys the same way (little-endian only: format.h). */
static inline void key_words(uint64_t *w, const unsigned char *k, size_t n)
{
    size_t full = n / 8, i;
    for (i = 0; i < full; i++)
        memcpy(&w[i], k + 8 * i, 8);
    if (n % 8)
        w[i] = tail_word(k + 8 * i, n % 8);
}

int shmlease__key_prepare(const shmlease_table *t, const char *key, struct keybuf *kb)
{
    if (!key || !key[0])
        return -EINVAL;
    size_t n = strnlen(key, SHMLEASE_KEY_MAX + 1);
    if (n > SHMLEASE_KEY_MAX)
        return -ENAMETOOLONG;
    /* Only the words the key spans are meaningful (hash, compare); the last
     * one is zero padded. Each word is built in a register and stored whole:
     * a byte-wise copy followed by the hash's 8-byte loads would stall on
     * store forwarding (a large part of a short key's cost). */
    key_words(kb->w, (const unsigned char *)key, n);
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

void shmlease__salted_key(const struct keybuf *kb, uint64_t m, struct keybuf *skb)
{
    uint32_t nw = (kb->len + 7) / 8;
    for (uint32_t j = 0; j < nw; j++)
        skb->w[j] = kb->w[j];
    skb->len = kb->len;
    skb->hash = salted_hash(kb->hash, m);
}

/* The inverse of SLOT_SALT modulo 2^64 (Newton's iteration: each step
 * doubles the correct low bits; five steps from 3 bits give 96). */
static uint64_t salt_inverse(void)
{
    uint64_t x = SLOT_SALT;
    for (int i = 0; i < 5; i++)
        x *= 2 - SLOT_SALT * x;
    return x;
}

uint64_t shmlease__salt_of(const shmlease_table *t, const uint64_t *kw, uint32_t klen, uint64_t hash)
{
    if (klen == 0 || klen > SHMLEASE_KEY_MAX)
        return 0;
    uint64_t d = hash ^ key_hash(t->epoch, kw, klen);
    return d ? d * salt_inverse() : 0;
}
