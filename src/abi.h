/*
 * The option structs' reserved space (include/shmlease.h, "ABI"): a call
 * given a non-zero reserved byte returns -EINVAL before it changes anything.
 * The caller was built for a newer library and asks for something this one
 * does not know.
 */
#ifndef SHMLEASE_ABI_H
#define SHMLEASE_ABI_H

#include <stddef.h>

/* 1 when the N bytes at P are all zero. */
static inline int shmlease__all_zero(const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    unsigned char any = 0;
    for (size_t i = 0; i < n; i++)
        any |= b[i];
    return any == 0;
}

/* 1 when the reserved members of option struct S (a pointer) are zero. */
#define SHMLEASE_RESERVED_ZERO(s) shmlease__all_zero((s)->reserved_0, sizeof (s)->reserved_0)

#endif
