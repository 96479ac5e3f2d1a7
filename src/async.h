/*
 * Async acquire (shmlease_acquire_async in include/shmlease.h): one worker
 * thread per pending request runs the blocking shmlease_acquire with a
 * cancel token of the request's own; an eventfd becomes readable when the
 * request is done. A request given a cancel token of the caller's has a
 * second, small thread that passes a cancel of that token on to the
 * request's own token.
 *
 * Nothing else in the library depends on this module.
 */
#ifndef SHMLEASE_ASYNC_H
#define SHMLEASE_ASYNC_H

#include "shmlease.h"

/* Stack of each thread of a request: the acquire's frames are small. */
#define SHMLEASE_ASYNC_STACK (1u << 20)

#endif
