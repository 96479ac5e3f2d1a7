/*
 * Process identity, read from the kernel: who this process is (PID, start
 * time, PID and time namespaces, boot, fork generation), the start time of
 * other processes, and which threads map a file. The values
 * are for comparison and display; liveness itself never rests on a PID
 * (docs/liveness.md).
 */
#ifndef SHMLEASE_PROC_H
#define SHMLEASE_PROC_H

#include <stdint.h>

/* Bumped in every fork child (handles.c): values cached per process are
 * read again in a child. */
extern unsigned shmlease__fork_gen;

/* This process as the registry and the holder records describe it; read
 * once per process (again after fork). */
struct shmlease__self {
    unsigned fork_gen;
    int32_t  pid;
    uint64_t start_time;       /* /proc/self/stat field 22, 0 unknown */
    uint64_t pidns;            /* inode of /proc/self/ns/pid, 0 unknown */
    uint64_t timens;           /* inode of /proc/self/ns/time, 0 unknown */
    uint8_t  boot_id[16];      /* /proc/sys/kernel/random/boot_id, zeroes unknown */
};
const struct shmlease__self *shmlease__self(void);

/* Start time of process PID (0 = self), clock ticks since boot; 0 unknown. */
uint64_t shmlease__proc_start_time(int32_t pid);
/* The calling thread's id, cached per thread (no syscall on a hot path). */
int32_t  shmlease__proc_tid(void);
/* Does thread TID of this PID namespace map a file of inode INO? 1 yes or
 * cannot tell, 0 no (no such thread here, or it does not map it). */
int      shmlease__proc_maps_inode(int32_t tid, uint64_t ino);

#endif
