/*
 * Fencing on the resource's side (shmlease_fence_accept in
 * include/shmlease.h): remember the newest token accepted, refuse older ones.
 *
 * In memory: one 64-bit word raised by compare-and-swap, never lowered.
 *
 * In a file (a "fence file"), 40 bytes, little-endian:
 *   0   magic "shmlfnc1"
 *   8   record 0: token (8 bytes), check (8 bytes)
 *   24  record 1: token, check
 * check is a mix of the token (record_check): a record whose check does not
 * match (never written, or torn by a crash in the middle of its write) is
 * not valid. The newest token is the greatest valid record's. A new token
 * is written over the record that does not hold the newest one, so that a
 * write cut short leaves the newest token in the other record: a crash
 * can lose the token being written (it was not accepted: the call had not
 * returned 0), never bring back an older one. An empty file is a new fence
 * (newest 0); anything else is not ours (-EPROTO) and is not touched.
 *
 * Check and set are one step under an open-file-description write lock
 * (F_OFD_SETLKW) on the file: the kernel drops it when the holder dies, and
 * threads of one process each using their own open() exclude each other
 * too. The new record reaches the disk (fdatasync) before 0 is returned.
 */
#include "compiler.h"
#include "shmlease.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FENCE_MAGIC_LEN 8
static const unsigned char FENCE_MAGIC[FENCE_MAGIC_LEN] = {'s', 'h', 'm', 'l', 'f', 'n', 'c', '1'};
#define FENCE_RECORD_LEN 16
#define FENCE_FILE_LEN (FENCE_MAGIC_LEN + 2 * FENCE_RECORD_LEN)

SHM_API int shmlease_fence_accept(uint64_t *newest, uint64_t token)
{
    if (!newest || ((uintptr_t)newest & (sizeof *newest - 1)))
        return -EINVAL;
    uint64_t cur = __atomic_load_n(newest, __ATOMIC_ACQUIRE);
    do {
        if (token < cur)
            return -ESTALE;
        if (token == cur)
            return 0;
    } while (!__atomic_compare_exchange_n(newest, &cur, token, 1, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
    return 0;
}

/* A mix of the token's bits (every input bit moves about half the output
 * bits), so that a torn record, made of parts of two writes, or of one
 * write and zeros, does not check. Never 0 for any token, so a zeroed
 * record is not valid either. */
static uint64_t record_check(uint64_t token)
{
    uint64_t z = token + 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    return z | 1;
}

struct fence_state {
    uint64_t newest;
    int slot_of_newest;    /* 0 or 1; -1: a new (empty) fence file */
};

static int lock_file(int fd, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;    /* start 0, length 0: the whole file */
    while (fcntl(fd, F_OFD_SETLKW, &fl) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

static void unlock_file(int fd)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    (void)fcntl(fd, F_OFD_SETLK, &fl);
}

static int read_state(int fd, struct fence_state *st)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -errno;
    if (sb.st_size == 0) {
        st->newest = 0;
        st->slot_of_newest = -1;
        return 0;
    }
    unsigned char b[FENCE_FILE_LEN];
    if (sb.st_size != FENCE_FILE_LEN)
        return -EPROTO;
    ssize_t n;
    while ((n = pread(fd, b, sizeof b, 0)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -errno;
    if (n != FENCE_FILE_LEN || memcmp(b, FENCE_MAGIC, FENCE_MAGIC_LEN) != 0)
        return -EPROTO;
    int found = -1;
    for (int i = 0; i < 2; i++) {
        uint64_t tok, chk;
        memcpy(&tok, b + FENCE_MAGIC_LEN + (size_t)i * FENCE_RECORD_LEN, 8);
        memcpy(&chk, b + FENCE_MAGIC_LEN + (size_t)i * FENCE_RECORD_LEN + 8, 8);
        tok = le64toh(tok);
        if (le64toh(chk) != record_check(tok))
            continue;
        if (found < 0 || tok > st->newest) {
            st->newest = tok;
            found = i;
        }
    }
    st->slot_of_newest = found;
    return found < 0 ? -EPROTO : 0;   /* both bad: not a file we wrote */
}

static int write_all(int fd, const void *p, size_t len, off_t off)
{
    ssize_t n;
    while ((n = pwrite(fd, p, len, off)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

/* Writes TOKEN over the record that does not hold the newest token (a
 * new file gets the magic and record 0 in one write), then syncs. */
static int write_token(int fd, const struct fence_state *st, uint64_t token)
{
    unsigned char rec[FENCE_RECORD_LEN];
    uint64_t tok = htole64(token), chk = htole64(record_check(token));
    memcpy(rec, &tok, 8);
    memcpy(rec + 8, &chk, 8);
    int rc;
    if (st->slot_of_newest < 0) {
        unsigned char b[FENCE_FILE_LEN];
        memset(b, 0, sizeof b);
        memcpy(b, FENCE_MAGIC, FENCE_MAGIC_LEN);
        memcpy(b + FENCE_MAGIC_LEN, rec, sizeof rec);
        rc = write_all(fd, b, sizeof b, 0);
    } else {
        int slot = 1 - st->slot_of_newest;
        rc = write_all(fd, rec, sizeof rec, FENCE_MAGIC_LEN + slot * FENCE_RECORD_LEN);
    }
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -errno;
    return rc;
}

static int check_fd(int fd)
{
    if (fd < 0)
        return -EBADF;
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -errno;
    return S_ISREG(sb.st_mode) ? 0 : -EINVAL;
}

SHM_API int shmlease_fence_accept_fd(int fd, uint64_t token)
{
    int rc = check_fd(fd);
    if (rc)
        return rc;
    rc = lock_file(fd, F_WRLCK);
    if (rc)
        return rc;
    struct fence_state st;
    rc = read_state(fd, &st);
    if (rc == 0 && token < st.newest)
        rc = -ESTALE;
    else if (rc == 0 && (token > st.newest || st.slot_of_newest < 0))
        rc = write_token(fd, &st, token);
    unlock_file(fd);
    return rc;
}

SHM_API int shmlease_fence_read_fd(int fd, uint64_t *newest)
{
    if (!newest)
        return -EINVAL;
    int rc = check_fd(fd);
    if (rc)
        return rc;
    rc = lock_file(fd, F_RDLCK);
    if (rc)
        return rc;
    struct fence_state st;
    memset(&st, 0, sizeof st);
    rc = read_state(fd, &st);
    unlock_file(fd);
    if (rc == 0)
        *newest = st.newest;
    return rc;
}
