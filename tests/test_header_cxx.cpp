// The public header compiles as C++ (and links: extern "C").
#include "shmlease.h"
#include "shmlease.h" // include guard

#include <cstdio>
#include <cerrno>
#include <cstring>
#include <type_traits>

static_assert(std::is_standard_layout<shmlease_lease>::value, "plain value");
static_assert(std::is_trivially_copyable<shmlease_lease>::value, "plain value");
static_assert(std::is_standard_layout<shmlease_info>::value, "plain value");
static_assert(sizeof(shmlease_info::key) == SHMLEASE_KEY_MAX + 1, "key buffer");
static_assert(SHMLEASE_WAIT_FOREVER == -1, "contract");

static int fn(const shmlease_lease *l, void *arg)
{
    (void)l;
    (void)arg;
    return 0;
}

int main()
{
    shmlease_options o{};
    o.capacity = 8;
    shmlease_acquire_opts ao{};
    ao.ttl_ms = 1000;
    ao.wait_ms = SHMLEASE_WAIT_FOREVER;
    shmlease_lease l{};
    shmlease_info i{};
    shmlease_stats s{};
    int (*with)(shmlease_table *, const char *, const shmlease_acquire_opts *,
                int (*)(const shmlease_lease *, void *), void *) = shmlease_with;
    (void)with;
    (void)ao;
    (void)fn;
    (void)o;
    (void)l;
    (void)i;
    (void)s;
    const char *e = shmlease_strerror(-16);
    if (e == nullptr || std::strlen(e) == 0)
        return 1;
    if (std::strcmp(shmlease_errname(-99999), "E?") != 0)
        return 1;
    shmlease_table *t = nullptr;
    if (shmlease_open("", nullptr, &t) != -EINVAL)
        return 1;
    std::printf("header OK from C++ %ld\n", (long)__cplusplus);
    return 0;
}
