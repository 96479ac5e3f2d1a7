/* A module that includes b.h, whose header includes a.h: a cycle. */
#include "b.h"

int a(void)
{
    return 1;
}
