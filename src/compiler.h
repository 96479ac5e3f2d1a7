/* Compiler helpers shared by every source file of the library. */
#ifndef SHMLEASE_COMPILER_H
#define SHMLEASE_COMPILER_H

#include "shmlease.h"

#define SHM_API SHMLEASE_API   /* on the definition of a public call */
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#endif
