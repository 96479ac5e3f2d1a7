/* Fencing on the resource's side: the newest token accepted, in a word of
 * shared memory and in a fence file, raced by real processes; a holder
 * paused past its TTL is refused once the next holder wrote; a write torn
 * by a crash never brings back an older token; bad input. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

#define CHILDREN 6
#define WORD_ROUNDS 20000
#define FILE_ROUNDS 400

/* What the racing children share: a counter that hands out tokens, the
 * fence word, and per child the greatest token it saw accepted. */
struct race {
    _Atomic uint64_t next;
    uint64_t fence;                       /* shmlease_fence_accept's word */
    _Atomic uint64_t acked[CHILDREN];
    _Atomic uint64_t accepted, refused;
    _Atomic int ready, go;                /* a start line for the children */
};

static const char *fence_path(const char *tag)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/shmlease-fence-%d-%s", (int)getpid(), tag);
    unlink(path);
    return path;
}

static uint64_t read_newest(int fd)
{
    uint64_t v = 0;
    TU_RC(shmlease_fence_read_fd(fd, &v), 0);
    return v;
}

/* One racing child: draws fresh tokens from the counter and accepts them
 * (refusal allowed: a greater one may have come first); after each accept
 * the newest is at least that token; and a token below the newest it read
 * is always refused. FD < 0: the shared word; else a fence file (opened
 * again here: each child its own open file description). */
static void race_child(struct race *r, int id, const char *path, int rounds)
{
    int fd = -1;
    if (path) {
        fd = open(path, O_RDWR | O_CLOEXEC);
        TU_CK(fd >= 0);
    }
    atomic_fetch_add(&r->ready, 1);
    while (!atomic_load(&r->go))
        tu_sleep_us(100);
    for (int i = 0; i < rounds; i++) {
        uint64_t tok = atomic_fetch_add(&r->next, 1) + 1;
        int rc = fd < 0 ? shmlease_fence_accept(&r->fence, tok) : shmlease_fence_accept_fd(fd, tok);
        TU_CK(rc == 0 || rc == -ESTALE);
        uint64_t newest;
        if (fd < 0)
            newest = __atomic_load_n(&r->fence, __ATOMIC_ACQUIRE);
        else
            TU_CK_RC(shmlease_fence_read_fd(fd, &newest), 0);
        if (rc == 0) {
            TU_CK(newest >= tok);
            atomic_store(&r->acked[id], tok);
            atomic_fetch_add(&r->accepted, 1);
        } else {
            TU_CK(newest > tok);       /* refused only for a newer one */
            atomic_fetch_add(&r->refused, 1);
        }
        if (newest > 1 && (i % 8) == 0) {   /* a stale holder, now and then */
            rc = fd < 0 ? shmlease_fence_accept(&r->fence, newest - 1)
                        : shmlease_fence_accept_fd(fd, newest - 1);
            TU_CK_RC(rc, -ESTALE);
        }
    }
    _exit(0);
}

static void run_race(struct race *r, const char *path, int rounds)
{
    pid_t kids[CHILDREN];
    for (int i = 0; i < CHILDREN; i++) {
        kids[i] = tu_fork();
        if (kids[i] == 0)
            race_child(r, i, path, rounds);
    }
    assert_true(TU_WAIT_FOR(atomic_load(&r->ready) == CHILDREN, 30000));
    atomic_store(&r->go, 1);
    for (int i = 0; i < CHILDREN; i++)
        tu_expect_exit0_within(kids[i], 120000);
    TU_EQU(atomic_load(&r->accepted) + atomic_load(&r->refused), (uint64_t)CHILDREN * rounds);
    tu_note("fence %s: %llu accepted, %llu refused (a greater token came first) of %d racing "
            "accepts", path ? "file" : "word", (unsigned long long)r->accepted,
            (unsigned long long)r->refused, CHILDREN * rounds);
}

/* Processes racing on a word of shared memory: the word ends at the
 * greatest token handed out (its accept cannot have been refused), every
 * accept left it at least at its token, every older token was refused. */
static void test_fence_word_shared_by_racing_processes(void **state)
{
    (void)state;
    struct race *r = tu_shared(sizeof *r);
    run_race(r, NULL, WORD_ROUNDS);
    TU_EQU(r->fence, atomic_load(&r->next));
    TU_RC(shmlease_fence_accept(&r->fence, r->fence - 1), -ESTALE);
    TU_RC(shmlease_fence_accept(&r->fence, r->fence), 0);     /* the same holder again */
}

/* The same with a fence file, each process with its own descriptor. */
static void test_fence_file_shared_by_racing_processes(void **state)
{
    (void)state;
    const char *path = fence_path("race");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    TU_EQU(read_newest(fd), 0);                              /* empty: nothing yet */
    struct race *r = tu_shared(sizeof *r);
    run_race(r, path, FILE_ROUNDS);
    TU_EQU(read_newest(fd), atomic_load(&r->next));
    TU_RC(shmlease_fence_accept_fd(fd, read_newest(fd) - 1), -ESTALE);
    struct stat sb;
    TU_EQ(fstat(fd, &sb), 0);
    TU_EQ(sb.st_size, 40);
    close(fd);
    unlink(path);
}

/* The story fencing is for: A holds the lease, is paused (SIGSTOP) past
 * its TTL; B acquires (a greater token), accepts it at the resource and
 * writes; A resumes and offers its token: refused, and the resource keeps
 * B's write. Checked with the fence file and with the word. */
static void test_fence_refuses_a_holder_paused_past_its_ttl(void **state)
{
    (void)state;
    const char *name = tu_name("fpause");
    const char *path = fence_path("pause");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    uint64_t *word = tu_shared(sizeof *word);
    shmlease_table *t = tu_open(name, NULL);

    tu_chan c;
    tu_chan_init(&c);
    pid_t a = tu_fork();
    if (a == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        int afd = open(path, O_RDWR | O_CLOEXEC);
        TU_CK(afd >= 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "res", 300, 0, &l), 0);
        TU_CK_RC(shmlease_fence_accept_fd(afd, l.fencing_token), 0);
        TU_CK_RC(shmlease_fence_accept(word, l.fencing_token), 0);
        tu_up(&c, (int64_t)l.fencing_token);
        TU_CK(tu_down_recv(&c) == 1);              /* after the pause */
        tu_up(&c, shmlease_fence_accept_fd(afd, l.fencing_token));
        tu_up(&c, shmlease_fence_accept(word, l.fencing_token));
        tu_up(&c, shmlease_check(u, &l));
        _exit(0);
    }
    tu_chan_parent(&c, a);
    uint64_t ta = (uint64_t)tu_up_recv(&c, 10000);
    TU_EQ(kill(a, SIGSTOP), 0);
    assert_true(tu_wait_stopped(a, 10000));

    /* B: waits for A's lease to run out, then takes the key and writes. */
    shmlease_lease b;
    TU_RC(tu_acquire(t, "res", 60000, 60000, &b), 0);
    TU_GT(b.fencing_token, ta);
    TU_RC(shmlease_fence_accept_fd(fd, b.fencing_token), 0);
    TU_RC(shmlease_fence_accept(word, b.fencing_token), 0);

    TU_EQ(kill(a, SIGCONT), 0);
    tu_down(&c, 1);
    TU_RC(tu_up_recv(&c, 10000), -ESTALE);         /* the file refuses A */
    TU_RC(tu_up_recv(&c, 10000), -ESTALE);         /* so does the word */
    TU_RC(tu_up_recv(&c, 10000), -ESTALE);         /* and A's lease is lost */
    tu_expect_exit0(a);
    TU_EQU(read_newest(fd), b.fencing_token);
    TU_EQU(*word, b.fencing_token);
    TU_RC(shmlease_release(t, &b), 0);
    close(fd);
    unlink(path);
}

/* Writes raw bytes at OFF of the file at FD (a crash's leftovers). */
static void poke(int fd, off_t off, const void *p, size_t n)
{
    TU_EQ(pwrite(fd, p, n, off), (ssize_t)n);
}

/* A record torn by a crash (half of a new token, or a new token with the
 * old check, or zeros) is not valid: the newest token stays the one
 * accepted before, an older one is still refused, and the next accept
 * writes over the torn record. */
static void test_fence_file_torn_write_never_accepts_an_older_token(void **state)
{
    (void)state;
    const char *path = fence_path("torn");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    TU_RC(shmlease_fence_accept_fd(fd, 5), 0);     /* record 0 */
    TU_RC(shmlease_fence_accept_fd(fd, 9), 0);     /* record 1 */
    TU_EQU(read_newest(fd), 9);
    /* The next write goes to record 0 (offset 8); tear it three ways. */
    uint64_t half = 12;                            /* the token, not its check */
    poke(fd, 8, &half, 4);
    TU_EQU(read_newest(fd), 9);
    TU_RC(shmlease_fence_accept_fd(fd, 7), -ESTALE);
    unsigned char zeros[16] = {0};
    poke(fd, 8, zeros, sizeof zeros);
    TU_EQU(read_newest(fd), 9);
    TU_RC(shmlease_fence_accept_fd(fd, 8), -ESTALE);
    poke(fd, 8, &half, 8);                         /* token whole, check old */
    TU_EQU(read_newest(fd), 9);
    TU_RC(shmlease_fence_accept_fd(fd, 12), 0);
    TU_EQU(read_newest(fd), 12);
    TU_RC(shmlease_fence_accept_fd(fd, 10), -ESTALE);
    TU_RC(shmlease_fence_accept_fd(fd, 12), 0);    /* equal: accepted, unchanged */
    close(fd);
    unlink(path);
}

/* Processes killed (SIGKILL) at random moments while they accept: the
 * file stays a valid fence, at least at every token that was acknowledged
 * (the call returned 0 before the kill). */
static void test_fence_file_survives_processes_killed_while_accepting(void **state)
{
    (void)state;
    const char *path = fence_path("kill");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    struct race *r = tu_shared(sizeof *r);
    uint64_t seed = (uint64_t)getpid() * 2654435761u + 1;
    for (int round = 0; round < 20; round++) {
        pid_t kids[3];
        for (int i = 0; i < 3; i++) {
            kids[i] = tu_fork();
            if (kids[i] == 0) {
                int cfd = open(path, O_RDWR | O_CLOEXEC);
                TU_CK(cfd >= 0);
                for (;;) {
                    uint64_t tok = atomic_fetch_add(&r->next, 1) + 1;
                    int rc = shmlease_fence_accept_fd(cfd, tok);
                    TU_CK(rc == 0 || rc == -ESTALE);
                    if (rc == 0 && atomic_load(&r->acked[i]) < tok)
                        atomic_store(&r->acked[i], tok);
                }
            }
        }
        uint64_t before = atomic_load(&r->next);
        TU_WAIT_FOR(atomic_load(&r->next) > before + 5 + tu_rand(&seed) % 40, 30000);
        for (int i = 0; i < 3; i++)
            tu_kill(kids[i]);
        uint64_t newest = read_newest(fd);
        for (int i = 0; i < 3; i++)
            TU_TRUE(newest >= atomic_load(&r->acked[i]),
                    "round %d: newest %llu below a token acknowledged to child %d (%llu)",
                    round, (unsigned long long)newest, i,
                    (unsigned long long)atomic_load(&r->acked[i]));
        if (newest > 0)
            TU_RC(shmlease_fence_accept_fd(fd, newest - 1), -ESTALE);
    }
    close(fd);
    unlink(path);
}

/* Bad input: a clear code, and the file is not touched. */
static void test_fence_bad_input_is_refused_and_changes_nothing(void **state)
{
    (void)state;
    TU_RC(shmlease_fence_accept(NULL, 1), -EINVAL);
    uint64_t words[2] = {0, 0};
    TU_RC(shmlease_fence_accept((uint64_t *)((char *)words + 4), 1), -EINVAL);
    TU_EQU(words[0], 0);
    TU_RC(shmlease_fence_accept(&words[0], 3), 0);
    TU_RC(shmlease_fence_accept(&words[0], 2), -ESTALE);
    TU_EQU(words[0], 3);

    TU_RC(shmlease_fence_accept_fd(-1, 1), -EBADF);
    uint64_t v;
    TU_RC(shmlease_fence_read_fd(-1, &v), -EBADF);
    const char *path = fence_path("bad");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    TU_RC(shmlease_fence_read_fd(fd, NULL), -EINVAL);
    TU_RC(shmlease_fence_accept_fd(fd, 4), 0);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(ro >= 0);
    TU_RC(shmlease_fence_accept_fd(ro, 9), -EBADF);   /* not open for writing */
    TU_RC(shmlease_fence_read_fd(ro, &v), 0);
    TU_EQU(v, 4);
    close(ro);
    TU_RC(shmlease_fence_accept_fd(ro, 9), -EBADF);   /* closed */
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dir >= 0);
    TU_RC(shmlease_fence_accept_fd(dir, 9), -EINVAL);
    close(dir);
    int p[2];
    TU_EQ(pipe2(p, O_CLOEXEC), 0);
    TU_RC(shmlease_fence_accept_fd(p[1], 9), -EINVAL);
    close(p[0]);
    close(p[1]);
    TU_EQU(read_newest(fd), 4);
    close(fd);

    /* Not a fence file: someone's data. Refused, left as it was. */
    const char *data = "precious data, not a fence\n";
    TU_EQ(tu_write_file(path, data, strlen(data), 0600), 0);
    fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    TU_RC(shmlease_fence_accept_fd(fd, 9), -EPROTO);
    TU_RC(shmlease_fence_read_fd(fd, &v), -EPROTO);
    close(fd);
    size_t n;
    char *back = tu_read_file(path, &n);
    assert_non_null(back);
    TU_EQ(n, strlen(data));
    assert_memory_equal(back, data, n);
    free(back);
    /* 40 bytes of something else (bad magic) too. */
    char forty[40];
    memset(forty, 'x', sizeof forty);
    TU_EQ(tu_write_file(path, forty, sizeof forty, 0600), 0);
    fd = open(path, O_RDWR | O_CLOEXEC);
    TU_RC(shmlease_fence_accept_fd(fd, 9), -EPROTO);
    close(fd);
    unlink(path);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_fence_word_shared_by_racing_processes),
        TU_TEST(test_fence_file_shared_by_racing_processes),
        TU_TEST(test_fence_refuses_a_holder_paused_past_its_ttl),
        TU_TEST(test_fence_file_torn_write_never_accepts_an_older_token),
        TU_TEST(test_fence_file_survives_processes_killed_while_accepting),
        TU_TEST(test_fence_bad_input_is_refused_and_changes_nothing),
    };
    return TU_RUN(tests);
}
