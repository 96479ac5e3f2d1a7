/* b.h includes a.h */
#include "a.h"
