/*
 * shmlease - named leases (locks that expire) shared by the processes of one
 * host through a POSIX shared-memory segment, with no server.
 *
 * Conventions
 *   Every function that can fail returns 0 on success or a negative errno value
 *   (-EBUSY, -ETIMEDOUT, ...). errno is never used to report a result.
 *   shmlease_strerror() names every code. All functions are thread-safe on one
 *   shmlease_table handle unless noted.
 *
 * Caveats
 *   - fork(): a child holds none of its parent's leases. It may keep using the
 *     inherited handle (the library re-registers it on first use) but lease
 *     values copied from the parent are stale in the child (-ESTALE). While a
 *     process has handles open, its fork() returns once the child has let go
 *     of the parent's lock descriptors (so a child never keeps a dead parent
 *     looking alive). A child made with a raw clone()/vfork() that does not
 *     exec must not use the handle.
 *   - Leases are not re-entrant; one handle acquiring a key it holds gets -EBUSY
 *     (or waits like anyone else).
 *   - A paused holder (SIGSTOP, swapped out, frozen cgroup) loses its lease at
 *     its deadline while it may still believe it owns it. Pass the fencing token
 *     to the resource you protect, or call shmlease_check() before acting.
 *   - All processes using one table must use the same clock: the system's
 *     monotonic clock by default, or the same injected test clock. A
 *     read-write open from another time namespace or boot is -EXDEV.
 *   - Lost is lost for ever: once a lease has expired, been broken or taken
 *     over, every call on that lease value (and on any copy of it) returns
 *     -ESTALE, whatever happens to the key later.
 *   - shmlease_close() must not race with other calls on the same handle.
 *   - The segment is a mapped file: a process allowed to write it can also
 *     truncate it, and every process that touches the lost pages then gets
 *     SIGBUS. Keep the mode narrow (the default is 0600).
 */
#ifndef SHMLEASE_H
#define SHMLEASE_H

#include <errno.h>    /* the codes returned, negated: -EBUSY, ... */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks every public function: visible from the shared library, which is
 * built with hidden visibility. Nothing for a program to define. */
#if defined(__GNUC__) || defined(__clang__)
#define SHMLEASE_API __attribute__((visibility("default")))
#else
#define SHMLEASE_API
#endif

/*
 * ABI. The structs below have a fixed size and layout within a major version
 * (tests/test_abi.c asserts every size and offset). Their reserved members
 * are arrays named reserved_N (N counting from 0 in each struct): room for
 * later fields.
 *   - Option structs (shmlease_options, shmlease_acquire_opts): zero the whole
 *     struct (= {0}, a designated initializer, or memset), then set the fields
 *     you use. Reserved members must be zero: a non-zero reserved byte is
 *     -EINVAL, and the call changes nothing (the caller was built for a newer
 *     library and asks for something this one does not know).
 *   - Structs the library fills (shmlease_info, shmlease_stats): their reserved
 *     members are zero.
 *   - Both option structs grew in 1.1 (reserved_0 added). Programs built with
 *     the 1.0 header keep working with this library: libshmlease.so keeps the
 *     1.0 entry points of shmlease_open, shmlease_acquire and shmlease_with
 *     (symbol version SHMLEASE_1.0), which read only the 1.0 struct.
 *   - In 1.2 SHMLEASE_OPEN_SHARE replaced the 1.0/1.1 rule "a mode with group
 *     or other bits agrees to use another user's table". Programs built with
 *     the 1.0 or 1.1 header keep that rule (and its -EACCES refusal): their
 *     shmlease_open is the SHMLEASE_1.0 or SHMLEASE_1.1 entry point.
 */

/*
 * Version. These three lines are the one place the version number is written:
 * CMakeLists.txt reads them. The header a program is built with may be older
 * than the library it runs with (never of another major): compare
 * SHMLEASE_VERSION_NUMBER with shmlease_version_number() at run time.
 */
#define SHMLEASE_VERSION_MAJOR 1
#define SHMLEASE_VERSION_MINOR 4
#define SHMLEASE_VERSION_PATCH 0

/* (major << 16) | (minor << 8) | patch; usable in #if. Minor and patch < 256. */
#define SHMLEASE_VERSION_ENCODE(major, minor, patch) \
    (((major) << 16) | ((minor) << 8) | (patch))
#define SHMLEASE_VERSION_NUMBER \
    SHMLEASE_VERSION_ENCODE(SHMLEASE_VERSION_MAJOR, SHMLEASE_VERSION_MINOR, \
                            SHMLEASE_VERSION_PATCH)
/* "major.minor.patch", made from the three numbers above */
#define SHMLEASE_VERSION_STRING_(x) #x
#define SHMLEASE_VERSION_STRINGIFY_(x) SHMLEASE_VERSION_STRING_(x)
#define SHMLEASE_VERSION_STRING                                 \
    SHMLEASE_VERSION_STRINGIFY_(SHMLEASE_VERSION_MAJOR) "."     \
    SHMLEASE_VERSION_STRINGIFY_(SHMLEASE_VERSION_MINOR) "."     \
    SHMLEASE_VERSION_STRINGIFY_(SHMLEASE_VERSION_PATCH)

/* Limits. */
#define SHMLEASE_KEY_MAX       127   /* bytes of a key, without the NUL */
#define SHMLEASE_METADATA_MAX  128   /* bytes of metadata copied into the table */
#define SHMLEASE_NAME_MAX      200   /* bytes of a table name */
#define SHMLEASE_CAPACITY_MAX  (1u << 24)
#define SHMLEASE_DEFAULT_CAPACITY 4096u
#define SHMLEASE_HANDLES_MAX   4095  /* handles attached to one table at once */

/* ------------------------------------------------------------------------ */
/* Tables                                                                    */

typedef struct shmlease_table shmlease_table;      /* opaque, one per open */

typedef struct shmlease_options {
    uint32_t capacity;   /* live keys the table holds (held, or in a grace period);
                            one more is -ENOSPC; used only when this call creates
                            the segment; 0 = 4096 */
    uint32_t mode;       /* permission bits when creating; 0 = 0600 */
    uint32_t flags;      /* SHMLEASE_OPEN_* below; 0 = create if missing, else attach */
    uint64_t (*clock_ms)(void *ctx);  /* NULL = the system's monotonic clock, in ms */
    void    *clock_ctx;
    /* additions (a zeroed field keeps the default) */
    uint32_t open_timeout_ms;  /* longest open() waits for the table's structural
                                  locks (held by a stopped process, or a creator
                                  still initialising); 0 = 5000 */
    uint32_t gid;              /* with SHMLEASE_OPEN_GROUP: the group of the files
                                  of a table this call creates (since 1.2) */
    const char *backend;       /* NULL = the local segment; else a Redis server's URL
                                  (since 1.4; see "Redis backend" below) */
    uint32_t reserved_0[4];    /* must be zero (since 1.1; see "ABI" above) */
} shmlease_options;

#define SHMLEASE_OPEN_NOCREATE  (1u << 0)  /* attach only: -ENOENT if missing   */
#define SHMLEASE_OPEN_EXCL      (1u << 1)  /* create only: -EEXIST if present   */
#define SHMLEASE_OPEN_READONLY  (1u << 2)  /* map read-only, for inspection; lease calls
                                              on such a handle return -EPERM       */
#define SHMLEASE_OPEN_SHARE     (1u << 3)  /* attach to a table another user owns, if
                                              its files' modes let the caller read
                                              and write them (since 1.2)           */
#define SHMLEASE_OPEN_GROUP     (1u << 4)  /* a table this call creates gets group
                                              opts->gid (since 1.2)               */

/*
 * Opens table NAME (the POSIX shm object "/shmlease.NAME"), creating it when
 * missing unless SHMLEASE_OPEN_NOCREATE. A segment whose creator died during
 * initialisation is initialised again by the next opener (the creator's
 * record in the table's lock file proves it; an empty or zero-filled file
 * without that record is someone else's and is refused, -EPROTO).
 *
 * Whose table. A table belongs to the owner of its segment. A read-write
 * open of a table that belongs to another user (another effective uid) is
 * refused with -EPERM unless SHMLEASE_OPEN_SHARE: whoever made a name first
 * owns it, and a table made by someone else under the name we meant (a
 * squatter) must not be used by accident. With SHARE the open attaches when
 * the segment's and the lock file's modes let the caller read and write
 * them, as the kernel judges it (owner, group or supplementary groups,
 * other; root may always), and is -EACCES otherwise. SHARE changes nothing
 * for a table of the caller's own, nor for one this call creates (mode,
 * gid). READONLY opens take no lease and write nothing: they attach to any
 * table the caller may read, whoever owns it (-EACCES if it may not), and
 * need no SHARE.
 *
 * Creating. A new table's two files are created readable and writable by
 * the caller only, then given group opts->gid (with SHMLEASE_OPEN_GROUP),
 * then the mode asked: nobody else can open them before they have their
 * final owner, group and mode. The lock file's mode follows the segment's
 * (read and write for each class that may write the segment).
 *
 * Returns 0 and *out, or:
 *   -EINVAL   bad name (not [A-Za-z0-9._-]{1,200}, or "." / ".."), bad options
 *             (capacity above SHMLEASE_CAPACITY_MAX, mode above 0777, unknown flag,
 *             EXCL with NOCREATE or READONLY, reserved_0 not zero), out NULL
 *   -ENOENT   NOCREATE and no such table
 *   -EEXIST   EXCL and the table exists
 *   -EPERM    the table belongs to another user and SHARE was not given (a
 *             read-write open); or GROUP names a group the caller may not give
 *             its files (not one of its groups, and not root): nothing created
 *   -EACCES   the segment or its lock file may not be opened or mapped by the
 *             caller (its own table, or another user's with SHARE), or the lock
 *             file belongs to someone who may not write the segment (planted)
 *   -EPROTO   the segment is not a shmlease table of this layout: bad magic, other
 *             byte order or format, truncated, inconsistent header, an empty or
 *             zero-filled file that no creator of ours left, or not a regular
 *             file (a FIFO or directory squatting the name), or a structural
 *             lock that no live process can hold (a damaged segment)
 *   -EXDEV    read-write open of a table made in another time namespace or an
 *             earlier boot: its deadlines are on another monotonic clock
 *   -ETIMEDOUT a structural lock stayed taken for open_timeout_ms (its holder
 *             is stopped)
 *   -ENOSPC   no room in /dev/shm for a new segment
 *   -EAGAIN   the table's files kept being created and removed by others while
 *             this call opened them (100 rounds): try again
 *   -ENOMEM, -EMFILE, -ENFILE  resources
 */
SHMLEASE_API int shmlease_open(const char *name, const shmlease_options *opts /* NULL ok */,
                               shmlease_table **out);

/* Releases the leases still held through t, detaches, frees t. NULL is a no-op. */
SHMLEASE_API void shmlease_close(shmlease_table *t);

/* Removes the table (its segment and lock file); open handles keep working.
 * Only a table is removed: a name that holds something else (a directory, a
 * FIFO, a file that is neither a shmlease segment of any format nor one our
 * creator left half-built) is -EPROTO, and nothing is removed.
 * 0, -EINVAL (bad name), -ENOENT, -EACCES (the caller may not read the
 * segment, or may not remove it: another user's table, and not root),
 * -EPROTO. */
SHMLEASE_API int shmlease_unlink(const char *name);

/*
 * Redis backend (since 1.4). With opts->backend set to a Redis URL, the
 * table lives on that server instead of in a local segment, and every call
 * below works on it, from any number of hosts:
 *   redis://[[user]:password@]host[:port][/db][?option=value&...]
 *   unix:///path/to/redis.sock[?db=N&option=value...]
 * Options: timeout_ms (the longest a call waits for one answer; default
 * 2000), connect_timeout_ms (default 2000), retry_ms (how long a call keeps
 * reconnecting after a lost connection before it reports it; default 5000).
 * rediss:// (TLS) and other schemes are -EPROTONOSUPPORT; so is any URL when
 * the library was built without the backend. The table's keys on the
 * server are "shmlease:{NAME}:...", all in one Redis Cluster slot; a
 * Cluster node's redirection (MOVED) is followed.
 *
 * The same contract, with these differences:
 *   - Dead holders. A holder of this host and PID namespace that has died
 *     is proved dead and its lease is taken over at once, as locally. A
 *     holder on another host is freed only by its TTL: no kernel can prove
 *     its death to us.
 *   - Deadlines. The server's clock decides when a lease ends. expires_at_ms
 *     is on the caller's monotonic clock (shmlease_now_ms): the time the
 *     request was sent plus the TTL less 2 ms (the server counts whole ms
 *     of its own clock), so it is earlier than the server's deadline, and
 *     at least now + ttl_ms - 2 - (the round trip) on return. An acquire
 *     whose answer comes back after that deadline frees the key and is
 *     -ETIME. The server's clock must not jump (Redis needs that too):
 *     a jump forward ends leases early.
 *   - A server gone away never raises SIGPIPE in the caller (the library
 *     blocks it around its writes). shmlease_close releases the handle's
 *     leases if the server answers; once one release cannot be sent, the
 *     rest end at their TTL.
 *   - Lost is lost for ever, and proved by the server: renew, release and
 *     shmlease_check ask it (check costs one round trip here). A call that
 *     cannot reach the server returns a connection error while the lease's
 *     deadline has not passed (the lease may still be held: call again),
 *     and -ESTALE once it has: a lease never outlives a deadline it could
 *     not confirm, whatever happens to the connection or the server.
 *   - Fencing tokens are drawn by the script that claims the key: strictly
 *     increasing per table, and greater than the server's clock in
 *     microseconds, so they keep increasing even across a restart that lost
 *     the data or a failover to a replica that had not seen the last ones.
 *   - Not on this backend: SHMLEASE_SHARED, SHMLEASE_ACQUIRE_FAIR and
 *     shmlease_upgrade (-EOPNOTSUPP); shmlease_waiters (-EOPNOTSUPP;
 *     shmlease_info.waiters counts them); the test clock (clock_ms with a
 *     backend is -EINVAL). capacity, mode, gid and the SHARE and GROUP flags
 *     are accepted and ignored: access is the server's (AUTH, ACL).
 *   - Stats: capacity, attached, segment_bytes and created_at_ms are 0;
 *     format_version is the layout of the table's keys (1).
 * More errors on this backend:
 *   -ECONNREFUSED  the server could not be reached for retry_ms
 *   -ECONNRESET    the connection broke during a call that could not safely
 *                  be sent again: it may or may not have taken effect
 *   -ETIME         no answer within timeout_ms (the same uncertainty)
 *   -EACCES        AUTH or an ACL refused the call
 *   -ENOSPC        the server is out of memory (maxmemory)
 *   -EPROTO        the server's keys for this table have another layout, or an
 *                  answer was not understood
 *   -EOPNOTSUPP    a mode this backend does not offer (above)
 */
/* Removes a table: backend NULL is shmlease_unlink(NAME); a Redis URL
 * deletes the table's keys on that server (leases held in it are then
 * lost; handles still open make the table anew). 0, -ENOENT (no key of
 * the table), -EINVAL, the errors above (since 1.4). */
SHMLEASE_API int shmlease_unlink_backend(const char *name, const char *backend);

/* ------------------------------------------------------------------------ */
/* Leases                                                                    */

#define SHMLEASE_WAIT_FOREVER  (-1)

/* Waits of acquires given this token (opts.cancel) can be ended from any
 * thread: see shmlease_cancel() below (since 1.3). */
typedef struct shmlease_cancel_token shmlease_cancel_token;

typedef struct shmlease_acquire_opts {
    uint64_t    ttl_ms;        /* > 0, else -EINVAL */
    int64_t     wait_ms;       /* 0 = try once; > 0 = wait up to; SHMLEASE_WAIT_FOREVER */
    const void *metadata;      /* optional, copied into the table */
    size_t      metadata_len;  /* <= SHMLEASE_METADATA_MAX, else -EINVAL */
    /* since 1.3 (zero keeps the 1.2 behaviour: an exclusive lease) */
    uint32_t    mode;          /* SHMLEASE_EXCLUSIVE (0) or SHMLEASE_SHARED */
    uint32_t    limit;         /* SHARED only: at most this many holders of the key
                                  at once, 1..SHMLEASE_LIMIT_MAX; 0 = no limit but
                                  SHMLEASE_LIMIT_MAX */
    uint32_t    flags;         /* SHMLEASE_ACQUIRE_* */
    uint32_t    reserved_0[1]; /* must be zero (see "ABI" above) */
    shmlease_cancel_token *cancel; /* NULL, or a token whose shmlease_cancel() ends
                                  this acquire's wait with -ECANCELED */
    uint64_t    reserved_1[1]; /* must be zero */
} shmlease_acquire_opts;

/* Modes (opts.mode). */
#define SHMLEASE_EXCLUSIVE 0u  /* one holder; waits for every shared holder to leave */
#define SHMLEASE_SHARED    1u  /* any number of shared holders (up to opts.limit), no
                                  exclusive one */
#define SHMLEASE_LIMIT_MAX 1023u
/* Flags (opts.flags). */
#define SHMLEASE_ACQUIRE_FAIR (1u << 0)  /* served in arrival order (see below) */

typedef struct shmlease_lease {      /* a plain value owned by the caller */
    uint64_t fencing_token;          /* public, read-only. Greater than the token of
                                        every acquire (any key) that returned before
                                        this acquire was called, and than every
                                        earlier holder's of the same key; two
                                        acquires of different keys that overlap in
                                        time may return in either order */
    uint64_t expires_at_ms;          /* public, read-only; on the table's clock */
    uint64_t _private[6];            /* private: callers must not touch them */
} shmlease_lease;

/*
 * Acquires KEY for ttl_ms. Returns 0 with *out filled, or:
 *   -EINVAL        NULL/empty key, ttl_ms 0, wait_ms < -1, metadata_len too long,
 *                  metadata NULL with a length, reserved_0 not zero; t, o or out
 *                  NULL
 *   -ENAMETOOLONG  key longer than SHMLEASE_KEY_MAX
 *   -EBUSY         held by another live owner and wait_ms == 0 (or, for a key not yet
 *                  in the table, the table's structural lock stayed taken for
 *                  100 ms: its holder is stopped)
 *   -ETIMEDOUT     the wait ran out (including waiting for that lock)
 *   -ENOSPC        no room for another live key
 *   -EPERM         read-only handle
 *   -EUSERS        SHMLEASE_HANDLES_MAX handles already attached
 *   -EPROTO        a structural lock that no live process can hold (damaged table)
 *   -ECANCELED     opts.cancel was fired (shmlease_cancel) before or during the
 *                  wait; nothing is held
 *   -EDOM          SHARED with a limit other than the one the key's live shared
 *                  holders were given (all holders of a live key agree on it)
 *   -EINVAL also: mode not EXCLUSIVE/SHARED, limit above SHMLEASE_LIMIT_MAX or
 *                  given with EXCLUSIVE, an unknown flag, reserved_1 not zero
 *
 * Modes. An EXCLUSIVE lease (the default) has the key to itself. SHARED
 * leases of a key coexist, up to opts.limit of them (0: SHMLEASE_LIMIT_MAX),
 * and exclude every exclusive one; "at most N at once" is SHARED with limit
 * N. Each shared holder has its own lease value, fencing token, deadline,
 * metadata, renew, release and dead-holder reclaim. Writer preference: once
 * an exclusive acquire waits for a key, new shared acquires wait behind it
 * (the exclusive acquirer reserves the key, then waits for the shared
 * holders to leave; its own TTL keeps running meanwhile, renewed by it). A
 * try (wait_ms 0) of a key held in the other mode, or with no room left, is
 * -EBUSY. Every process that uses a key in SHARED mode must run 1.3 or newer.
 *
 * Fair queues (flag SHMLEASE_ACQUIRE_FAIR). By default a released key goes
 * to whichever acquirer looks first (barging: the fastest hand-off). A FAIR
 * acquire that cannot have the key at once, or that finds others queued,
 * takes a ticket and waits for its turn: FAIR waiters of a key are served
 * strictly in the order they queued, across modes (shared requests at the
 * head are admitted together; a shared request behind an exclusive one
 * waits for it). A queued waiter that times out, is cancelled or dies
 * costs nobody their turn; one stopped for more than 2 s loses its place
 * and queues again when it resumes. Each queued waiter uses one of the
 * table's entries while it waits (-ENOSPC when none is left). Acquires
 * without the flag do not queue: a key's acquirers should agree. A try
 * (wait_ms 0) finding others queued is -EBUSY.
 * The lease returned has expires_at_ms >= now + ttl_ms - S as of acquire's
 * last clock read (never later than now + ttl_ms), however long the call
 * waited. S is 1 ms with an injected clock; otherwise the new deadline is
 * read from the cheaper coarse monotonic clock and S is two of its ticks
 * (2 x clock_getres(CLOCK_MONOTONIC_COARSE) rounded up to ms: 8 ms at the
 * common 250 Hz). S is never more than ttl_ms - 1: a lease is never over
 * when it is returned (and a TTL of up to four times S takes its deadline
 * from the precise clock). expires_at_ms is the true deadline. A TTL beyond
 * the table's 34-year horizon is clamped to it.
 * A key whose holder's process has died is free to a waiting acquire at
 * once, and to a try (wait_ms == 0) within 1 ms of the death: tries share
 * the kernel's "alive" answer about a holder for up to 1 ms.
 */
SHMLEASE_API int shmlease_acquire(shmlease_table *t, const char *key,
                                  const shmlease_acquire_opts *o, shmlease_lease *out);
/*
 * renew, release and release_after return 0 only if they took effect before
 * the lease's deadline. (A renew to a TTL shorter than the call itself takes
 * may return 0 with expires_at_ms already past: the lease is then lost at
 * that instant, like any other.) A call that cannot prove it (its clock read after the
 * change has reached the deadline) returns -ESTALE and leaves the key free,
 * as the expiry made it; the lease value is lost for good either way.
 */
/*
 * Turns shared lease L into an exclusive lease of the same key, atomically:
 * no other exclusive holder comes in between. Waits (up to wait_ms, as
 * acquire does, cancel NULL) for the other shared holders to leave; new
 * shared acquirers wait meanwhile. On success *l is the new exclusive lease
 * (a new, greater fencing token; deadline now + ttl_ms) and the shared one
 * is gone. On failure *l is still held, except after -ESTALE: while it
 * waited, the upgrade kept it from expiring (its deadline moved to now +
 * ttl_ms whenever that was later, never earlier), and *l's expires_at_ms
 * gives its deadline on return.
 *   -EDEADLK    another holder already waits to take the key exclusively (an
 *               upgrader, or an exclusive acquire waiting for L's holder to
 *               leave): waiting would deadlock. Release L and acquire anew.
 *   -ETIMEDOUT  the others did not leave in time; -EBUSY with wait_ms 0
 *   -ESTALE     L was lost; -EINVAL (L not a shared lease, ttl_ms 0), -EPERM
 */
SHMLEASE_API int shmlease_upgrade(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms,
                                  int64_t wait_ms);
/* Sets the deadline to now + ttl_ms. 0, -ESTALE (lost), -EINVAL, -EPERM. */
SHMLEASE_API int shmlease_renew(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms);
/* Frees the key at once and wakes waiters. 0, -ESTALE, -EINVAL, -EPERM.
 * The value is spent: a second release of it is -ESTALE. */
SHMLEASE_API int shmlease_release(shmlease_table *t, shmlease_lease *l);
/* Keeps the key held by nobody until now + grace_ms (never later). 0, -ESTALE,
 * -EINVAL, -EPERM. */
SHMLEASE_API int shmlease_release_after(shmlease_table *t, shmlease_lease *l,
                                       uint64_t grace_ms);
/* Acquires, calls fn, releases; fn's result, or the acquire error (fn not
 * called). fn cannot renew, a lease lost while fn ran goes unreported, and
 * fn's result shares its range with the error codes: prefer
 * shmlease_with_lease. */
SHMLEASE_API int shmlease_with(shmlease_table *t, const char *key,
                               const shmlease_acquire_opts *o,
                               int (*fn)(const shmlease_lease *l, void *arg), void *arg);
/*
 * Acquires KEY, calls fn(t, &lease, arg), then releases the lease, unless fn
 * ended it itself (release or release_after: fn may keep the key for a grace
 * period, or renew as long work goes on). Returns:
 *   0        fn ran, and the lease was held from the acquire until its end
 *            (our release, or fn's own, returned 0);
 *   -ESTALE  fn ran, but the lease was lost before it ended (expired,
 *            broken, or found lost by fn's renew): what fn did may have
 *            overlapped another holder's work;
 *   the acquire's error (-EBUSY, -ETIMEDOUT, -EINVAL, ...): fn did not run.
 * *fn_result (if fn_result is not NULL) receives fn's return value whenever fn
 * ran, and is not written otherwise.
 */
SHMLEASE_API int shmlease_with_lease(shmlease_table *t, const char *key,
                                     const shmlease_acquire_opts *o,
                                     int (*fn)(shmlease_table *t, shmlease_lease *l, void *arg),
                                     void *arg, int *fn_result);
/* 0 while l is still the current, unexpired claim of its key; else -ESTALE.
 * Cheap (no syscall unless the clock needs one): call it before acting. */
SHMLEASE_API int shmlease_check(shmlease_table *t, const shmlease_lease *l);
/* Operator's tool: ends whoever holds KEY now (held or grace): the exclusive
 * holder, or every shared holder (and an exclusive acquirer waiting for them
 * to leave). The holders' renew/release then fail with -ESTALE; the next
 * acquirer gets a greater token.
 * 0, -ENOENT (not held), -EINVAL, -ENAMETOOLONG, -EPERM. */
SHMLEASE_API int shmlease_break(shmlease_table *t, const char *key);

/*
 * Cancel tokens (since 1.3): a way to end, from any thread, acquires that
 * wait (SHMLEASE_WAIT_FOREVER included). Give a token as opts.cancel; then
 * shmlease_cancel(token) makes every acquire waiting with it return
 * -ECANCELED at once, holding nothing, and every later acquire given it
 * return -ECANCELED without trying, until shmlease_cancel_reset(token). One
 * token may serve many acquires, in many threads. Not async-signal-safe
 * (it takes a mutex): from a signal handler, write to a pipe read by a
 * thread that cancels. A token must outlive the acquires given it.
 */
SHMLEASE_API int shmlease_cancel_create(shmlease_cancel_token **out);   /* 0, -EINVAL, -ENOMEM */
SHMLEASE_API int shmlease_cancel(shmlease_cancel_token *c);             /* 0, -EINVAL (NULL) */
SHMLEASE_API int shmlease_cancel_reset(shmlease_cancel_token *c);       /* 0, -EINVAL (NULL) */
SHMLEASE_API void shmlease_cancel_destroy(shmlease_cancel_token *c);    /* NULL is a no-op */

SHMLEASE_API const char *shmlease_strerror(int rc);
/* "EBUSY", "ETIMEDOUT", ... or "E?" for unknown codes. */
SHMLEASE_API const char *shmlease_errname(int rc);

/* ------------------------------------------------------------------------ */
/* Async acquire (since 1.3)                                                 */

/*
 * An acquire that does not block the caller: shmlease_acquire_async starts
 * it and returns at once; a file descriptor becomes readable when it is done
 * (poll, epoll, select, or any event loop); shmlease_async_result then gives
 * the lease or the error. shmlease_acquire is unchanged beside it.
 *
 *   shmlease_async *a;
 *   shmlease_acquire_async(t, "job", &o, &a);   // o: as for shmlease_acquire
 *   struct pollfd p = {.fd = shmlease_async_fd(a), .events = POLLIN};
 *   poll(&p, 1, -1);                            // or an event loop's watch
 *   rc = shmlease_async_result(a, &lease);      // 0: lease is ours
 *   shmlease_async_free(a);                     // the lease stays ours
 *
 * A request waits in a thread of its own that the library starts (signals
 * blocked in it), which runs shmlease_acquire with the caller's options;
 * a request given opts.cancel has one more, small thread (it passes that
 * token's cancel on). At most SHMLEASE_ASYNC_MAX requests of a process
 * wait at once; one more is -EAGAIN. A try (wait_ms 0) starts no thread:
 * it is done when shmlease_acquire_async returns.
 *
 * The key, the metadata and the options are copied: the caller's buffers
 * may go once the call returns. The table handle must stay open until the
 * request is freed (free every request before shmlease_close).
 *
 * A lease that nobody fetched is never left held: cancelling a request
 * that succeeded but whose result was not fetched, or freeing it, releases
 * the lease.
 *
 * Threads: the calls may come from any thread, concurrently, except that
 * shmlease_async_free must not race with another call on the same request.
 * Fork: a request belongs to the process that started it; threads do not
 * cross fork(). In a child, fd, result and cancel return -ECHILD (the
 * descriptor the child inherited means nothing), and free only gives back
 * the child's copies (it releases nothing, waits for nothing).
 */
typedef struct shmlease_async shmlease_async;     /* opaque, one per request */

#define SHMLEASE_ASYNC_MAX 256   /* requests of one process waiting at once */

/*
 * Starts acquiring KEY with the options O (mode, limit, flags, metadata,
 * cancel: all as shmlease_acquire takes them) and returns at once with
 * *out, the request. wait_ms counts from this call. O's cancel token, if
 * any, ends the request with -ECANCELED like shmlease_async_cancel does.
 * Returns 0 and *out, or (nothing started, *out untouched):
 *   -EINVAL        t, key, o or out NULL, or options shmlease_acquire
 *                  refuses (ttl_ms 0, wait_ms < -1, metadata, reserved
 *                  fields, mode, limit)
 *   -ENAMETOOLONG  key longer than SHMLEASE_KEY_MAX
 *   -ECANCELED     o->cancel had been fired
 *   -EAGAIN        SHMLEASE_ASYNC_MAX requests of this process wait
 *                  already, or the system refused a thread
 *   -ENOMEM, -EMFILE, -ENFILE  resources
 * Every other code of shmlease_acquire (-EBUSY, -ETIMEDOUT, -EPERM for a
 * read-only handle, an unknown flag's -EINVAL, ...) is the request's result.
 */
SHMLEASE_API int shmlease_acquire_async(shmlease_table *t, const char *key,
                                        const shmlease_acquire_opts *o,
                                        shmlease_async **out);
/* The request's descriptor (an eventfd, O_CLOEXEC and O_NONBLOCK): not
 * readable while the request is pending, readable from the moment it is
 * done until it is freed (level-triggered; do not read or close it). Owned
 * by the request. -EINVAL (NULL), -ECHILD (a fork child). */
SHMLEASE_API int shmlease_async_fd(const shmlease_async *a);
/*
 * -EINPROGRESS while pending; then the acquire's result: 0 with *out, the
 * lease, which is the caller's from then on (release it as any other; free
 * will not), or its error. -ECANCELED after a cancel (nothing held). May be
 * called again: the same answer. -EINVAL (a or out NULL), -ECHILD.
 */
SHMLEASE_API int shmlease_async_result(shmlease_async *a, shmlease_lease *out);
/*
 * Asks the request to end. 0: its result is -ECANCELED and it holds
 * nothing: a pending acquire stops waiting at once (the fd becomes readable
 * then, promptly), and one that succeeded unfetched has its lease released
 * here. -EALREADY: it was done with an error, or its lease was fetched: the
 * result stays. -EINVAL (NULL), -ECHILD.
 */
SHMLEASE_API int shmlease_async_cancel(shmlease_async *a);
/* Cancels the request if it is pending, waits for its threads (promptly),
 * releases a lease nobody fetched, closes the descriptor, frees A. NULL is
 * a no-op. */
SHMLEASE_API void shmlease_async_free(shmlease_async *a);

/* ------------------------------------------------------------------------ */
/* Fencing on the resource's side (since 1.3)                               */

/*
 * A resource protected by a lease (a file, a directory of files, a service)
 * keeps the newest fencing token it has accepted and refuses work that
 * comes with an older one: the work of a holder whose lease was lost (it
 * was paused past its TTL, or broken) while a newer holder went on. These
 * calls are that check and set, in one step. Give each write its holder's
 * lease.fencing_token and act only on 0.
 *
 * Accept and the work it admits must not be separated by another holder's
 * accept and work: do both under the resource's own lock (or in one
 * transaction), or make the work itself conditional. A database row is
 * its own fence:
 *   UPDATE t SET ..., fence = :token WHERE id = :id AND fence <= :token
 * (0 rows changed: refused). See shmlease_fence(3).
 */

/*
 * *newest is the newest token accepted (0 at first): a word in any memory,
 * shared memory between processes included, 8-byte aligned. 0 when
 * token >= *newest, which becomes token; -ESTALE when token < *newest,
 * which stays. Lock-free (compare-and-swap), async-signal-safe. -EINVAL:
 * newest NULL or not aligned.
 */
SHMLEASE_API int shmlease_fence_accept(uint64_t *newest, uint64_t token);
/*
 * The same, kept in a fence file: FD, open for reading and writing, is a
 * regular file that holds the newest token accepted (empty at first:
 * newest 0; 40 bytes once written; see shmlease_fence(3)). Check and set
 * are one step across processes and threads (an open-file-description lock
 * that the kernel drops when its holder dies; it waits for another accept
 * in progress on the file), and a crash never leaves the file accepting a
 * token older than one it accepted. The new token is on the disk
 * (fdatasync) before 0 is returned.
 *   0        token >= the newest: the newest is now token
 *   -ESTALE  token < the newest: nothing changed
 *   -EBADF   fd not an open descriptor, or not open for writing
 *   -EINVAL  fd not a regular file
 *   -EPROTO  the file is not a fence file (other size, or contents this
 *            library did not write): left as it is
 *   -EIO, -ENOSPC, ...  the write or sync failed: the token may not be in
 *            the file; it was not accepted
 */
SHMLEASE_API int shmlease_fence_accept_fd(int fd, uint64_t token);
/* *newest = the newest token accepted in the fence file FD (0 when empty),
 * without changing it. 0, -EBADF (fd not open for reading), -EINVAL (newest
 * NULL, fd not a regular file), -EPROTO, -EIO. */
SHMLEASE_API int shmlease_fence_read_fd(int fd, uint64_t *newest);
/* Keepalive: renewal in the background, and a signal when lost (since 1.3)  */

/*
 * shmlease_keepalive_start() has the library renew a lease every
 * interval_ms (default: a third of ttl_ms) to now + ttl_ms, from one thread
 * per process that serves every keepalive of the process (made at the first
 * start; signals are blocked in it). When the lease is lost anyway, the
 * keepalive says so, both ways, once:
 *   - its descriptor (shmlease_keepalive_fd: an eventfd, O_CLOEXEC and
 *     O_NONBLOCK) becomes readable, and stays readable until stop (reading
 *     its 8-byte count is allowed and clears that); for poll/epoll/libuv;
 *   - on_lost(t, lease, why, arg) is called, if given, from the library's
 *     thread; lease is the keepalive's copy of the value (its latest
 *     expires_at_ms), valid during the call.
 * why (also shmlease_keepalive_status's answer from then on):
 *   -ESTALE  the lease was lost: its deadline passed before a renewal (the
 *            process was stopped or frozen past its TTL: nothing renews the
 *            lease of a stopped process, and after SIGCONT the first renewal
 *            reports the loss), or it was broken (shmlease_break) or taken;
 *   -EIDRM   the table was removed (shmlease_unlink) or replaced under its
 *            name: processes that open it now get another table, so the
 *            lease protects nothing any more. Renewals stop (the lease ends
 *            at its deadline in the removed segment).
 * A loss is found at the next renewal: within interval_ms (plus scheduling
 * delays) of it. Between renewals, shmlease_check() of the value is the
 * instant answer. The interval runs on CLOCK_MONOTONIC, whatever clock the
 * table uses.
 *
 * Ends without a signal: the lease's release or release_after (of any copy
 * of the value: the same claim) ends its keepalive before the release
 * takes effect; shmlease_close() of the table ends the keepalives of its
 * leases (close releases those leases); shmlease_keepalive_stop(). The
 * keepalive's status is then -ECANCELED. The keepalive object stays until
 * shmlease_keepalive_stop(), which every start must be paired with.
 *
 * The lease value. The keepalive renews its own copy of it; the caller's
 * value stays valid (same claim) with an older expires_at_ms: release,
 * renew and check it as before. shmlease_keepalive_status(k, &cur) gives
 * the latest deadline.
 *
 * fork(): a child has no keepalive (and none of its parent's leases): in
 * it, status and stats_get of an inherited keepalive say -ESTALE without a
 * signal, and stop only frees the child's copy (its descriptor included).
 *
 * Thread-safety. start, fd, status and stats_get may be called from any
 * thread, concurrently. stop may be called from any thread (the callback
 * included), once per keepalive; after it the keepalive is freed. When stop
 * returns in another thread than the callback's, the callback is not
 * running and will not run. shmlease_close() of the table waits for the
 * callbacks of its keepalives that are running (unless called from one).
 *
 * The callback runs on the library's thread, which renews every keepalive
 * of the process: keep it short (a callback that blocks delays the other
 * keepalives' renewals, which may cost them their leases). It may call any
 * shmlease function, including stop of its own keepalive (freed after the
 * callback returns; lease is then no longer to be used) and shmlease_close
 * of t; it must not wait for another thread that is inside stop or close of
 * the same keepalive or table. It runs with every signal blocked.
 */
typedef struct shmlease_keepalive shmlease_keepalive;   /* opaque */

typedef struct shmlease_keepalive_opts {
    uint64_t ttl_ms;       /* each renewal sets the deadline to now + ttl_ms; > 0 */
    uint64_t interval_ms;  /* time between renewals; 0 = ttl_ms / 3 (at least 1);
                              must be < ttl_ms */
    void (*on_lost)(shmlease_table *t, const shmlease_lease *l, int why, void *arg);
                           /* NULL: the descriptor alone */
    void    *arg;          /* passed to on_lost */
    uint64_t reserved_0[4];/* must be zero (see "ABI" above) */
} shmlease_keepalive_opts;

typedef struct shmlease_keepalive_stats {
    int32_t  status;       /* as shmlease_keepalive_status */
    uint32_t reserved_0[1];/* zero */
    uint64_t renewals;     /* successful renewals, the one at start included */
    uint64_t fencing_token;/* the lease's */
    uint64_t expires_at_ms;/* the latest deadline it set, on the table's clock */
    uint64_t ttl_ms;       /* as given */
    uint64_t interval_ms;  /* as used (the default resolved) */
    uint64_t running_ms;   /* from start until now, or until it was lost or ended */
    uint64_t reserved_1[4];/* zero */
} shmlease_keepalive_stats;

/*
 * Starts keeping L (a lease of T, held now) alive. Renews it at once, in
 * the caller (so a lease already lost is refused), then in the background.
 * 0 and *out, or:
 *   -EINVAL   t, l, o or out NULL; ttl_ms 0; interval_ms >= ttl_ms; a
 *             reserved member not zero; l not a lease of this table
 *   -ESTALE   l is lost (expired, broken, released, or the parent's)
 *   -EPERM    read-only handle
 *   -EEXIST   that lease (the same claim: any copy of the value) already
 *             has a running keepalive
 *   -EMFILE, -ENFILE  no descriptor for the eventfd
 *   -EAGAIN, -ENOMEM  no thread or memory
 * On error nothing is started (the first renewal may have happened).
 */
SHMLEASE_API int shmlease_keepalive_start(shmlease_table *t, const shmlease_lease *l,
                                          const shmlease_keepalive_opts *o,
                                          shmlease_keepalive **out);
/* The descriptor that becomes readable when the lease is lost; owned by the
 * keepalive (closed by stop). -EINVAL for NULL. */
SHMLEASE_API int shmlease_keepalive_fd(const shmlease_keepalive *k);
/* 0 while the keepalive keeps the lease (*current, if not NULL, gets the
 * keepalive's copy of the value, with the latest deadline; a valid lease
 * value of the caller); -ESTALE or -EIDRM once lost (as on_lost's why);
 * -ECANCELED once ended without a loss (release, close, stop); -EINVAL. */
SHMLEASE_API int shmlease_keepalive_status(shmlease_keepalive *k, shmlease_lease *current);
/* Fills *out (renewals, deadline, ...). Never blocks on the table. 0 or -EINVAL. */
SHMLEASE_API int shmlease_keepalive_stats_get(shmlease_keepalive *k,
                                              shmlease_keepalive_stats *out);
/* Stops renewing (the lease stays held until its latest deadline: release
 * it, or let it expire), closes the descriptor, frees K. Returns the status
 * as it was: 0 (held until now), -ESTALE / -EIDRM (lost), -ECANCELED
 * (released or closed before); -EINVAL for NULL. */
SHMLEASE_API int shmlease_keepalive_stop(shmlease_keepalive *k);

/* ------------------------------------------------------------------------ */
/* Inspection (never blocks, never writes the table)                         */

typedef struct shmlease_info {
    char     key[SHMLEASE_KEY_MAX + 1];
    uint64_t fencing_token;
    int32_t  holder_pid;         /* 0 when held by nobody (grace period) */
    int      holder_alive;       /* 1 alive, 0 dead, -1 cannot tell */
    int64_t  remaining_ms;       /* until expiry; <= 0 expired */
    uint32_t waiters;            /* threads of live processes sleeping on the key
                                    (up to 16 per handle are shown) */
    uint8_t  metadata[SHMLEASE_METADATA_MAX];
    size_t   metadata_len;
    /* additions */
    uint64_t expires_at_ms;      /* on the table's clock */
    int      in_grace;           /* 1: released with a grace period, held by nobody */
    int      holder_other_pidns; /* 1: holder_pid is a PID of another PID namespace */
    uint64_t holder_start_time;  /* holder's start time, clock ticks since boot */
    uint32_t holder_handle;      /* registry slot of the holder's handle, 0 none */
    /* since 1.3 */
    uint32_t mode;               /* SHMLEASE_EXCLUSIVE or SHMLEASE_SHARED: of this lease */
    uint32_t limit;              /* SHARED: the limit its holders agreed on */
    uint32_t holders;            /* shmlease_inspect: the key's live holders (the
                                    exclusive one, or every shared one); each shared
                                    holder is one visit of shmlease_foreach, with 1 */
    uint32_t queued;             /* shmlease_inspect: acquirers waiting in the key's
                                    fair queue (SHMLEASE_ACQUIRE_FAIR); 0 in foreach */
    uint32_t reserved_0[3];      /* zero */
} shmlease_info;

/* -ENOENT if KEY is free (not held, not in grace); -EINVAL, -ENAMETOOLONG.
 * A key held in SHARED mode is described by one of its holders (mode, limit,
 * holders: how many); shmlease_foreach visits each. A key reserved by an
 * exclusive acquirer that waits for its shared holders to leave shows that
 * acquirer as its EXCLUSIVE holder (shared holders still listed by foreach). */
SHMLEASE_API int shmlease_inspect(shmlease_table *t, const char *key, shmlease_info *out);
/* A process with threads asleep waiting for a key (shmlease_waiters). */
typedef struct shmlease_waiter {
    int32_t  pid;                /* as its process recorded it */
    int      other_pidns;        /* 1: pid is a PID of another PID namespace */
    uint64_t start_time;         /* its start time, clock ticks since boot; 0 unknown */
    uint32_t threads;            /* its threads asleep on the key (up to 16 shown) */
    uint32_t handle;             /* registry slot of its handle */
} shmlease_waiter;

/*
 * The live processes with a thread asleep waiting for KEY, from the table's
 * wait records (a waiter killed while it slept is not listed; shared and
 * fair waiters included: those asleep on its shared holders or in its fair
 * queue). Fills
 * out[0..min(n, max)) and returns n, the number of such processes (n > max:
 * the others did not fit; call again with more room), 0 when nobody waits
 * (a free key included); -EINVAL (t NULL, or out NULL with max > 0),
 * -ENAMETOOLONG. One process waiting through several handles of the table is
 * listed once per handle. A snapshot: waiters come and go while it is taken.
 */
SHMLEASE_API long shmlease_waiters(shmlease_table *t, const char *key, shmlease_waiter *out,
                                   size_t max);
/* Visits every held (unexpired) lease and every unexpired grace period once.
 * Returns fn's non-zero result when it stops the walk, else 0. */
SHMLEASE_API int shmlease_foreach(shmlease_table *t,
                                  int (*fn)(const shmlease_info *, void *), void *arg);

typedef struct shmlease_stats {
    /* counters since the table was created, all processes together */
    uint64_t acquisitions;      /* successful acquires */
    uint64_t contended;         /* acquires that found the key held */
    uint64_t waits;             /* acquires that slept at least once */
    uint64_t timeouts;          /* acquires that ended with -ETIMEDOUT */
    uint64_t busy;              /* acquires that ended with -EBUSY */
    uint64_t expirations;       /* acquires that took over an expired lease */
    uint64_t reclaimed_dead;    /* acquires that took over a dead holder's lease */
    uint64_t renewals;          /* successful renews */
    uint64_t lost;              /* renew/release/check that found the lease lost */
    uint64_t broken;            /* leases ended by shmlease_break */
    uint64_t recoveries;        /* structural changes repaired after a crash */
    /* state now */
    uint64_t fencing_counter;   /* the last token handed out */
    uint32_t capacity;          /* live keys the table can hold */
    uint32_t live_keys;         /* keys in the table (held, grace, or free but not yet retired) */
    uint32_t held;              /* held or in grace, unexpired */
    uint32_t attached;          /* handles attached (alive) */
    uint32_t format_version;
    uint32_t reserved_0[1];     /* zero */
    uint64_t segment_bytes;
    uint64_t created_at_ms;     /* on the table's clock */
    uint64_t table_epoch;       /* random, chosen when the segment was made */
    uint64_t reserved_1[8];     /* zero */
} shmlease_stats;

/* Fills *out. Never blocks, never writes. 0 or -EINVAL. */
SHMLEASE_API int shmlease_stats_get(shmlease_table *t, shmlease_stats *out);

/* The table's clock, in ms: what deadlines and expires_at_ms are measured on. */
SHMLEASE_API uint64_t shmlease_now_ms(shmlease_table *t);

/* ------------------------------------------------------------------------ */
/* Version of the library running (since 1.1)                               */

/* The library's SHMLEASE_VERSION_STRING (e.g. "1.1.0"), a static string. */
SHMLEASE_API const char *shmlease_version(void);
/* The library's SHMLEASE_VERSION_NUMBER. A program built with this header
 * may require shmlease_version_number() >= SHMLEASE_VERSION_NUMBER (a
 * library at least as new as its header). */
SHMLEASE_API uint32_t shmlease_version_number(void);

#ifdef __cplusplus
}
#endif
#endif /* SHMLEASE_H */
