/* Process identity from /proc (see proc.h). */
#include "proc.h"
#include "atomics.h"
#include "compiler.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

unsigned shmlease__fork_gen;

static void read_boot_id(uint8_t id[16]);

/* Up to LEN - 1 bytes of the small file PATH into BUF, NUL-terminated: the
 * byte count, or -1. With open/read/close rather than stdio: no buffer to
 * allocate and no fstat, which shows in the first open of a new process. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n < len - 1) {
        ssize_t r = read(fd, buf + n, len - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    return (ssize_t)n;
}

/* Field 22 (starttime) of /proc/PID/stat. */
uint64_t shmlease__proc_start_time(int32_t pid)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    char buf[1024];
    if (read_small(path, buf, sizeof buf) < 0)
        return 0;
    /* The command name may hold spaces and parentheses: parse from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* After ')': field 3 (state) ... field 22 (starttime) is the 20th token. */
    char *save = NULL;
    char *tok = strtok_r(p, " ", &save);
    for (int field = 3; tok && field < 22; field++)
        tok = strtok_r(NULL, " ", &save);
    return tok ? strtoull(tok, NULL, 10) : 0;
}

static uint64_t ns_inode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

const struct shmlease__self *shmlease__self(void)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static struct shmlease__self self;
    static unsigned ready;           /* fork generation + 1 of what self holds */
    unsigned gen = ld_relaxed(&shmlease__fork_gen) + 1;
    if (likely(ld_acquire(&ready) == gen))
        return &self;
    pthread_mutex_lock(&lock);
    if (ld_relaxed(&ready) != gen) {
        self.fork_gen = gen - 1;
        self.pid = (int32_t)getpid();
        self.start_time = shmlease__proc_start_time(0);
        self.pidns = ns_inode("/proc/self/ns/pid");
        self.timens = ns_inode("/proc/self/ns/time");
        read_boot_id(self.boot_id);
        st_release(&ready, gen);
    }
    pthread_mutex_unlock(&lock);
    return &self;
}

int32_t shmlease__proc_tid(void)
{
    static __thread int32_t tid;
    static __thread unsigned gen;
    unsigned g = ld_relaxed(&shmlease__fork_gen) + 1;
    if (tid == 0 || gen != g) {
        tid = (int32_t)gettid();
        gen = g;
    }
    return tid;
}

int shmlease__proc_maps_inode(int32_t tid, uint64_t ino)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT || errno == ESRCH ? 0 : 1;   /* no such thread here */
    char line[512];
    int found = 0, any = 0;
    while (!found && fgets(line, sizeof line, f)) {
        any = 1;
        /* address perms offset dev inode path: the fifth field */
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        for (int k = 1; tok && k < 5; k++)
            tok = strtok_r(NULL, " ", &save);
        char *endp;
        if (tok && strtoull(tok, &endp, 10) == ino && endp != tok)
            found = 1;
    }
    fclose(f);
    return found || !any;      /* unreadable contents: cannot tell */
}

/* This boot's id (/proc/sys/kernel/random/boot_id), zeroes if unknown. */
static void read_boot_id(uint8_t id[16])
{
    memset(id, 0, 16);
    char buf[64];
    if (read_small("/proc/sys/kernel/random/boot_id", buf, sizeof buf) > 0) {
        int n = 0;
        for (const char *p = buf; *p && n < 32; p++) {
            int v = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
            if (v < 0)
                continue;
            id[n / 2] = (uint8_t)(id[n / 2] << 4 | v);
            n++;
        }
    }
}
