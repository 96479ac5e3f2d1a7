/* One error table: shmlease_strerror() and shmlease_errname() come from it. */
#include "shmlease.h"
#include "compiler.h"

#include <errno.h>
#include <limits.h>

#define SHMLEASE_ERRORS(X)                                                        \
    X(0,               "OK",              "success")                              \
    X(EINVAL,          "EINVAL",          "invalid argument")                     \
    X(ENAMETOOLONG,    "ENAMETOOLONG",    "key longer than SHMLEASE_KEY_MAX")     \
    X(EBUSY,           "EBUSY",           "lease held by another owner")          \
    X(ETIMEDOUT,       "ETIMEDOUT",       "wait for the lease timed out")         \
    X(ENOSPC,          "ENOSPC",          "no room: table full or /dev/shm full") \
    X(ESTALE,          "ESTALE",          "lease lost: expired, broken or not this process's") \
    X(ENOENT,          "ENOENT",          "no such table or lease")               \
    X(EEXIST,          "EEXIST",          "table already exists")                 \
    X(EACCES,          "EACCES",          "permission denied for this table")     \
    X(EPROTO,          "EPROTO",          "not a shmlease table of this format (corrupt, truncated or foreign)") \
    X(EPERM,           "EPERM",           "not permitted: a read-only handle, another user's table without SHMLEASE_OPEN_SHARE, or a group not the caller's") \
    X(EUSERS,          "EUSERS",          "too many handles attached to the table") \
    X(ENOMEM,          "ENOMEM",          "out of memory")                        \
    X(EMFILE,          "EMFILE",          "too many open files in this process")  \
    X(ENFILE,          "ENFILE",          "too many open files in the system")    \
    X(EBADF,           "EBADF",           "table handle lost its file descriptor") \
    X(EIO,             "EIO",             "input/output error")                   \
    X(EINTR,           "EINTR",           "interrupted")                          \
    X(EAGAIN,          "EAGAIN",          "try again")                            \
    X(ENOSYS,          "ENOSYS",          "not supported by this kernel")         \
    X(ENOTRECOVERABLE, "ENOTRECOVERABLE", "table lock not recoverable")           \
    X(EOVERFLOW,       "EOVERFLOW",       "value too large")                      \
    X(EXDEV,           "EXDEV",           "table made on another clock (other time namespace or boot)") \
    X(ECANCELED,       "ECANCELED",       "cancelled: an acquire through its cancel token, or a keepalive ended by release, close or stop") \
    X(EDEADLK,         "EDEADLK",         "upgrade would deadlock: another holder waits to take the key exclusively") \
    X(EDOM,            "EDOM",            "shared key held with another limit") \
    X(EIDRM,           "EIDRM",           "table removed (unlinked) while a keepalive kept a lease in it") \
    X(EINPROGRESS,     "EINPROGRESS",     "still in progress (an async acquire not finished yet)") \
    X(ECONNREFUSED,    "ECONNREFUSED",    "the Redis server could not be reached") \
    X(ECONNRESET,      "ECONNRESET",      "connection to the Redis server lost during the call: it may or may not have taken effect") \
    X(ETIME,           "ETIME",           "the Redis server did not answer in time: the call may or may not have taken effect") \
    X(EOPNOTSUPP,      "EOPNOTSUPP",      "not offered by this table's backend") \
    X(EPROTONOSUPPORT, "EPROTONOSUPPORT", "backend URL scheme not supported (or the Redis backend not built)")

SHM_API const char *shmlease_strerror(int rc)
{
    if (rc > 0)
        return "not an error code (a positive value: a callback's result)";
    if (rc == INT_MIN)
        return "unknown error code";
    switch (-rc) {
#define X(code, name, text) case code: return text;
    SHMLEASE_ERRORS(X)
#undef X
    default: return "unknown error code";
    }
}

SHM_API const char *shmlease_errname(int rc)
{
    if (rc > 0 || rc == INT_MIN)
        return "E?";
    switch (-rc) {
#define X(code, name, text) case code: return name;
    SHMLEASE_ERRORS(X)
#undef X
    default: return "E?";
    }
}
