/*
 * The process's handles and fork() (see handles.h).
 */
#include "handles.h"
#include "clock.h"
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_mutex_t g_handles_lock = PTHREAD_MUTEX_INITIALIZER;
static shmlease_table *g_handles;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

void shmlease__handles_lock(void)
{
    pthread_mutex_lock(&g_handles_lock);
}

void shmlease__handles_unlock(void)
{
    pthread_mutex_unlock(&g_handles_lock);
}

/* ---- fork ----------------------------------------------------------------- */

/*
 * fork() and the registry locks. A child shares every open file description
 * of its parent until its fork handler (below) replaces the handle
 * descriptors (the lock file's: the only one an open handle keeps), and it runs that handler only once it is first scheduled:
 * until then, the parent's registry lock lives on in the child too, and a
 * parent killed in that interval would look alive. So fork() waits, in the
 * parent's handler, until the child has let go: the child closes its end of
 * a pipe when its handler is done (or when it dies); the parent reads to the
 * end of the pipe. Only processes with open handles pay for it, and never
 * longer than FORK_WAIT_MS. Known limit: a child that a tracer keeps
 * stopped before it first runs (a debugger following forks) holds the
 * parent's locks until it runs, so a parent that dies meanwhile looks alive
 * until then.
 */
#define FORK_WAIT_MS 1000
static int g_fork_pipe[2] = {-1, -1};

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_handles_lock);
    g_fork_pipe[0] = g_fork_pipe[1] = -1;
    if (g_handles && pipe2(g_fork_pipe, O_CLOEXEC) != 0)
        g_fork_pipe[0] = g_fork_pipe[1] = -1;
}

static void atfork_parent(void)
{
    if (g_fork_pipe[0] >= 0) {
        close(g_fork_pipe[1]);
        struct pollfd p = {.fd = g_fork_pipe[0], .events = POLLIN};
        uint64_t until = shmlease__mono_ms() + FORK_WAIT_MS;
        for (;;) {
            uint64_t now = shmlease__mono_ms();
            if (now >= until)
                break;                          /* a child stopped before it ran */
            int n = poll(&p, 1, (int)(until - now));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            char c;
            ssize_t r = read(g_fork_pipe[0], &c, 1);   /* readable: never blocks */
            if (r == 0 || (r < 0 && errno != EINTR))
                break;                          /* end of pipe: the child let go */
        }
        close(g_fork_pipe[0]);
        g_fork_pipe[0] = g_fork_pipe[1] = -1;
    }
    pthread_mutex_unlock(&g_handles_lock);
}

static void atfork_child(void)
{
    add_relaxed(&shmlease__fork_gen, 1);
    for (shmlease_table *t = g_handles; t; t = t->next) {
        pthread_mutex_init(&t->lock, NULL);
        t->regword = 0;
        if (t->opening) {
            /* Another thread of the parent was opening it (or unlinking the
             * table); that thread does not exist here, and nobody here has
             * the handle: just let go of the descriptions (the lock file's
             * may hold the init lock, or soon a registry lock, on the
             * parent's behalf). */
            if (t->sfd >= 0)
                close(t->sfd);
            if (t->fd >= 0)
                close(t->fd);
            t->sfd = t->fd = -1;
            continue;
        }
        if (t->fd < 0)
            continue;
        char path[32] = "/proc/self/fd/";
        char digits[12];
        int n = 0, v = t->fd;
        do {
            digits[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v && n < 11);
        size_t p = strlen(path);
        while (n)
            path[p++] = digits[--n];
        path[p] = 0;
        int nfd = open(path, (t->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (nfd >= 0) {
            dup3(nfd, t->fd, O_CLOEXEC);
            close(nfd);
        } else {
            close(t->fd);
            t->fd = -1;
        }
    }
    pthread_mutex_init(&g_handles_lock, NULL);
    if (g_fork_pipe[0] >= 0) {                 /* done: the parent's fork() returns */
        close(g_fork_pipe[0]);
        close(g_fork_pipe[1]);
        g_fork_pipe[0] = g_fork_pipe[1] = -1;
    }
}

static void install_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- where segments are mapped ---------------------------------------------- */

/*
 * munmap() of a mapping alone in its 2 MB stretch of address space frees the
 * page table under it, which makes the TLB flush at unmap a full one,
 * paging-structure caches included (on a virtual machine with shadow page
 * tables a costly exit, after which every page the process touches faults
 * into the shadow again), and the next mapping allocates the table again.
 * So the process keeps a few places for segments (PLACES, made as handles
 * need them): each a PROT_NONE page (the anchor: no memory, never unmapped)
 * at the start of a 2 MB-aligned stretch, with one segment at a time mapped
 * right after it. The stretch's page table then outlives each mapping, and
 * an unmap flushes only the pages used. MAP_FIXED_NOREPLACE never replaces
 * anything: when every place is taken (by other handles, or by anything else
 * mapped there meanwhile) or none can be made, the segment is mapped
 * wherever the kernel puts it. The places are guarded by the handle-list
 * lock, so a fork child inherits them consistent with the mappings it
 * inherits.
 */
#define PLACE_ALIGN ((uintptr_t)2 << 20)
#define PLACES 4
static uint8_t *g_place[PLACES];  /* anchor pages, NULL until first needed */
static unsigned g_place_used;     /* bit i: a handle is mapped after place i */

/* The anchor: a 2 MB-aligned PROT_NONE page, or NULL. */
static uint8_t *place_make(size_t page)
{
    size_t span = 2 * PLACE_ALIGN;
    uint8_t *r = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)r + PLACE_ALIGN - 1) & ~(PLACE_ALIGN - 1));
    if (a > r)
        munmap(r, (size_t)(a - r));
    munmap(a + page, (size_t)(r + span - (a + page)));
    return a;
}

void *shmlease__handle_map(shmlease_table *t, size_t size, int prot, int fd)
{
    void *map = MAP_FAILED;
#ifdef MAP_FIXED_NOREPLACE
    long pagesize = sysconf(_SC_PAGESIZE);
    size_t page = pagesize > 0 ? (size_t)pagesize : 4096;
    pthread_mutex_lock(&g_handles_lock);
    for (int i = 0; i < PLACES && map == MAP_FAILED; i++) {
        if (g_place_used & (1u << i))
            continue;
        if (!g_place[i])
            g_place[i] = place_make(page);
        if (!g_place[i])
            break;
        void *want = g_place[i] + page;
        map = mmap(want, size, prot, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
        if (map == want) {
            g_place_used |= 1u << i;
            t->placed = i + 1;
        }                              /* elsewhere: a kernel before 4.17 took it for a hint */
    }
    pthread_mutex_unlock(&g_handles_lock);
#endif
    if (map == MAP_FAILED)
        map = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
    return map;
}

void shmlease__handle_unmap(shmlease_table *t, void *map, size_t size)
{
    munmap(map, size);
    if (t->placed) {
        pthread_mutex_lock(&g_handles_lock);
        g_place_used &= ~(1u << (t->placed - 1));
        t->placed = 0;
        pthread_mutex_unlock(&g_handles_lock);
    }
}

void shmlease__handle_free(shmlease_table *t)
{
    pthread_mutex_lock(&g_handles_lock);
    for (shmlease_table **p = &g_handles; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    if (t->fd >= 0)
        close(t->fd);      /* drops our registry lock */
    if (t->sfd >= 0)
        close(t->sfd);
    t->fd = t->sfd = -1;
    pthread_mutex_unlock(&g_handles_lock);
    if (t->map)
        shmlease__handle_unmap(t, t->map, t->map_size);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* A handle listed from the start, so that a fork during the open sees every
 * descriptor it makes (see atfork_child). */
shmlease_table *shmlease__handle_new(const char *name)
{
    pthread_once(&g_atfork_once, install_atfork);
    shmlease_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->fd = t->sfd = -1;
    t->opening = 1;
    pthread_mutex_init(&t->lock, NULL);
    snprintf(t->name, sizeof t->name, "%s", name);
    pthread_mutex_lock(&g_handles_lock);
    t->next = g_handles;
    g_handles = t;
    pthread_mutex_unlock(&g_handles_lock);
    return t;
}

void shmlease__handle_close_fd(int *fdp)
{
    pthread_mutex_lock(&g_handles_lock);
    if (*fdp >= 0)
        close(*fdp);
    *fdp = -1;
    pthread_mutex_unlock(&g_handles_lock);
}

void shmlease__handle_opened(shmlease_table *t)
{
    pthread_mutex_lock(&g_handles_lock);
    t->opening = 0;
    pthread_mutex_unlock(&g_handles_lock);
}
