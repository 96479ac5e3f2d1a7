/*
 * Every internal header, for the test programs and tools that look inside a
 * table. Library sources include only the headers they use.
 */
#ifndef SHMLEASE_INTERNAL_H
#define SHMLEASE_INTERNAL_H

#include "compiler.h"
#include "abi.h"
#include "atomics.h"
#include "word.h"
#include "format.h"
#include "state.h"
#include "proc.h"
#include "table.h"
#include "clock.h"
#include "fault.h"
#include "names.h"
#include "handles.h"
#include "lockfile.h"
#include "mutex.h"
#include "segment.h"
#include "wait.h"
#include "liveness.h"
#include "registry.h"
#include "key.h"
#include "index.h"
#include "lease.h"

#endif
