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
 * Shared-holder slots. Slot I of key K is an entry of its own, with K's
 * bytes and length, and the hash K's hash XOR (I + 1) * SLOT_SALT: the index
 * compares whole hashes, so it is a key of its own, distinct from K and
 * from every other slot of K (exactly, not by chance: the salt is odd, so
 * (I + 1) * SLOT_SALT is never 0 and differs for every I), and a lookup of K
 * (by any build) never finds it. docs/state-machine.md, "Shared leases".
 */
#define SLOT_SALT UINT64_C(0x9e3779b97f4a7c15)
static inline uint64_t slot_hash(uint64_t key_hash, uint32_t i)
{
    return key_hash ^ ((uint64_t)(i + 1) * SLOT_SALT);
}
/* KB made the key of slot I of KB's key into SKB. */
void shmlease__slot_key(const struct keybuf *kb, uint32_t i, struct keybuf *skb);
/* Which slot entry E (its key read under key_seq SEQ, as inspect reads it:
 * KW, KLEN, HASH) is: 0 for a key's own entry, I + 1 for slot I. */
uint32_t shmlease__slot_of(const shmlease_table *t, const uint64_t *kw, uint32_t klen, uint64_t hash);

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
