/*
 * The process's handles: every shmlease_table of this process is on one
 * list, from the start of shmlease_open() to the end of shmlease_close(),
 * so that fork() can see each of them; and every descriptor a handle keeps
 * (the lock file's, the segment's while opening) is created, replaced and
 * closed only under the list's lock, so that fork() never copies a
 * descriptor its handlers do not know of (docs/liveness.md, "fork").
 */
#ifndef SHMLEASE_HANDLES_H
#define SHMLEASE_HANDLES_H

#include "table.h"

/* The list's lock: hold it around every open() or close() of a handle's
 * descriptor. */
void shmlease__handles_lock(void);
void shmlease__handles_unlock(void);

/* A new handle for table NAME, listed and marked "opening"; NULL: no memory. */
shmlease_table *shmlease__handle_new(const char *name);
/* shmlease_open() is about to return T: no longer "opening". */
void shmlease__handle_opened(shmlease_table *t);
/* Unlists T, closes its descriptors, unmaps, frees. */
void shmlease__handle_free(shmlease_table *t);
/* Maps SIZE bytes of the segment FD (PROT) for T: at the process's place
 * for a segment when it is free (see handles.c), else anywhere. MAP_FAILED
 * with errno, as mmap. */
void *shmlease__handle_map(shmlease_table *t, size_t size, int prot, int fd);
/* Unmaps what shmlease__handle_map gave T, and frees the place if it had it. */
void shmlease__handle_unmap(shmlease_table *t, void *map, size_t size);
/* Closes *FDP (if open) under the lock and sets it to -1. */
void shmlease__handle_close_fd(int *fdp);

#endif
