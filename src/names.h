/*
 * Names of a table's two files. Table NAME is the POSIX shm object
 * "/shmlease.NAME" (the segment, /dev/shm/shmlease.NAME) and
 * "/shmlease-lk.NAME" (its lock file). The prefix "shmlease-lk." can never
 * be a table's "shmlease." + name: '-' is not a '.'.
 */
#ifndef SHMLEASE_NAMES_H
#define SHMLEASE_NAMES_H

#include "shmlease.h"

#include <stddef.h>

#define SHM_DIR "/dev/shm"
#define PATH_LEN (SHMLEASE_NAME_MAX + 48)

/* 0, or -EINVAL unless NAME is [A-Za-z0-9._-]{1,SHMLEASE_NAME_MAX}, not "." or "..". */
int  shmlease__validate_name(const char *name);
void shmlease__shm_name(char *buf, size_t len, const char *name);     /* for shm_open */
void shmlease__shm_path(char *buf, size_t len, const char *name);     /* in /dev/shm */
void shmlease__lk_name(char *buf, size_t len, const char *name);
void shmlease__lk_path(char *buf, size_t len, const char *name);

#endif
