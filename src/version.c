/* The library's version, for a program to compare with the header it was
 * built with (SHMLEASE_VERSION_NUMBER). */
#include "shmlease.h"
#include "compiler.h"

_Static_assert(SHMLEASE_VERSION_MINOR < 256 && SHMLEASE_VERSION_PATCH < 256,
               "SHMLEASE_VERSION_NUMBER keeps 8 bits for minor and patch");

SHM_API const char *shmlease_version(void)
{
    return SHMLEASE_VERSION_STRING;
}

SHM_API uint32_t shmlease_version_number(void)
{
    return SHMLEASE_VERSION_NUMBER;
}
