/* Compiler helpers shared by every source file of the library. */
#ifndef SHMLEASE_COMPILER_H
#define SHMLEASE_COMPILER_H

#define SHM_API __attribute__((visibility("default")))   /* a public call */
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#endif
