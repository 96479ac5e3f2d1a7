/*
 * The segment: its layout for a capacity, the header's checksum and
 * validation, initialisation, and the first-opener protocol that attaches a
 * handle to it (docs/first-opener.md, docs/file-format.md).
 */
#ifndef SHMLEASE_SEGMENT_H
#define SHMLEASE_SEGMENT_H

#include "table.h"

#include <stdint.h>

/* Opens (read-write: creating and initialising it if need be, under the init
 * lock) and maps table t->name into T, validated. MODE and CAPACITY are
 * used when this call creates the segment; DEADLINE (monotonic ms) bounds
 * every wait. 0 or a negative code (see shmlease_open). */
int shmlease__segment_attach(shmlease_table *t, const shmlease_options *o, uint32_t mode,
                             uint32_t capacity, uint64_t deadline);

/* Is the file FD a table shmlease_unlink may remove: a segment of any
 * format or byte order, or a half-built one whose creator's record
 * (BUILDING, from the lock file) proves it ours? 0, -EPROTO or another
 * negative code. */
int shmlease__segment_is_ours(int fd, int building);

/* FNV-1a over the header's immutable fields, magic .. creator_uid. */
uint64_t shmlease__header_checksum(const struct shm_header *h);
/* Everything an attacher checks of a header read from a file of FILE_SIZE
 * bytes. 0 or -EPROTO. */
int shmlease__check_header(const struct shm_header *h, uint64_t file_size);

#endif
