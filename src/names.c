/* Names of a table's files (see names.h). */
#include "names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int shmlease__validate_name(const char *name)
{
    if (!name)
        return -EINVAL;
    size_t n = strnlen(name, SHMLEASE_NAME_MAX + 1);
    if (n == 0 || n > SHMLEASE_NAME_MAX)
        return -EINVAL;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return -EINVAL;
    }
    return 0;
}

void shmlease__shm_name(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/shmlease.%s", name);
}

void shmlease__shm_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, SHM_DIR "/shmlease.%s", name);
}

void shmlease__lk_name(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/shmlease-lk.%s", name);
}

void shmlease__lk_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, SHM_DIR "/shmlease-lk.%s", name);
}
