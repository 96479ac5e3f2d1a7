/*
 * Time. Two clocks: the system's monotonic clock in milliseconds (every
 * bound on a wait, every structural-lock timeout), and the table's clock,
 * which is the same monotonic clock unless a test injects its own, counted
 * from the table's creation (every lease deadline). Wall-clock time is never
 * used for a decision (docs/failure-modes.md F11).
 */
#ifndef SHMLEASE_CLOCK_H
#define SHMLEASE_CLOCK_H

#include "table.h"

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in ms (CTX unused: the signature of an injected clock). */
uint64_t shmlease__sys_clock_ms(void *ctx);
/* The table's clock, in ms since its creation (never negative). */
uint64_t shmlease__now_rel(const shmlease_table *t);
void     shmlease__ms_to_timespec(uint64_t ms, struct timespec *ts);
/* Sleeps MS ms (less if a signal interrupts: callers loop on a deadline). */
void     shmlease__sleep_ms(unsigned ms);
static inline uint64_t shmlease__mono_ms(void) { return shmlease__sys_clock_ms(NULL); }

#endif
