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
