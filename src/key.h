/*
 * Keys: a key copied into whole words (zero padded), its hash seeded with
 * the table's epoch, and the lock-free comparison of a key with an entry's
 * under the entry's key seqlock.
 */
#ifndef SHMLEASE_KEY_H
#define SHMLEASE_KEY_H

#include "table.h"

#include <stdint.h>

struct keybuf {
    uint64_t w[(SHMLEASE_KEY_MAX + 1 + 7) / 8];   /* zero padded */
    uint32_t len;
    uint64_t hash;
};

/*
 * Entries of a key besides its own (docs/state-machine.md, sections 8 and
 * 9): they have the key's bytes and length, and the key's hash XOR
 * M * SLOT_SALT for a number M > 0:
 *   M = 1..1024       shared-holder slot M - 1
 *   M = 1025          the key's fair queue (its ticket counter)
 *   M = 2048 + T      the place of ticket T in that queue
 * The index compares whole hashes, so each is a key of its own, distinct
 * from the key and from every other (exactly, not by chance: SLOT_SALT is
 * odd, so M * SLOT_SALT differs for every M modulo 2^64), and a lookup of
 * the key (by any build) never finds one.
 */
#define SLOT_SALT     UINT64_C(0x9e3779b97f4a7c15)
#define SALT_SLOTS    1024u
#define SALT_QUEUE    1025u
#define SALT_PLACE0   2048u
static inline uint64_t salted_hash(uint64_t key_hash, uint64_t m)
{
    return key_hash ^ (m * SLOT_SALT);
}
static inline uint64_t slot_hash(uint64_t key_hash, uint32_t i)
{
    return salted_hash(key_hash, (uint64_t)i + 1);
}
/* KB's key with its hash salted by M, into SKB (may be KB). */
void shmlease__salted_key(const struct keybuf *kb, uint64_t m, struct keybuf *skb);
/* KB made the key of slot I of KB's key into SKB. */
static inline void shmlease__slot_key(const struct keybuf *kb, uint32_t i, struct keybuf *skb)
{
    shmlease__salted_key(kb, (uint64_t)i + 1, skb);
}
/* The M of an entry whose key reads KW, KLEN and hash HASH: 0 for a key's
 * own entry (or a hash that is no salt of its key). */
uint64_t shmlease__salt_of(const shmlease_table *t, const uint64_t *kw, uint32_t klen, uint64_t hash);
/* 0 for a key's own entry, I + 1 for its slot I, 0 for other entries. */
static inline uint32_t shmlease__slot_of(const shmlease_table *t, const uint64_t *kw, uint32_t klen,
                                         uint64_t hash)
{
    uint64_t m = shmlease__salt_of(t, kw, klen, hash);
    return m <= SALT_SLOTS ? (uint32_t)m : 0;
}

/* Checks KEY and fills KB: 0, -EINVAL (NULL or empty), -ENAMETOOLONG. */
int shmlease__key_prepare(const shmlease_table *t, const char *key, struct keybuf *kb);
/* 1 when E holds KB's key and its key_seq still equals SEQ (even). */
int shmlease__key_matches(const struct shm_entry *e, const struct keybuf *kb, uint32_t seq);
/* Key word I of entry E, read as a writer may be changing it (the key
 * seqlock decides whether what was read counts). */
static inline uint64_t shmlease__key_word(const struct shm_entry *e, uint32_t i)
{
    return ld_relaxed((const uint64_t *)(const void *)(e->key + (size_t)8 * i));
}

#endif
