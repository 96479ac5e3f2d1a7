/* b.c: includes a.h and b.h */
#include "a.h"
#include "b.h"
