/* A worker thread that runs jobs after the fact, in the order they were
 * handed over: work that must happen but need not delay whoever queued it
 * (the sliding sync API uses it to finish a request once its response is
 * out, so the client's next request on the same HTTP connection does not
 * wait for it). */
#ifndef SYNCV3_BASE_DEFER_H
#define SYNCV3_BASE_DEFER_H

#include <stddef.h>

struct defer;

/* Starts the worker. max_queued bounds the jobs waiting: past it,
 * defer_run runs the job in the caller's thread (backpressure instead of a
 * growing queue). */
struct defer *defer_new(const char *thread_name, size_t max_queued);

/* Runs fn(arg) on the worker, after every job queued before it. */
void defer_run(struct defer *d, void (*fn)(void *arg), void *arg);

/* Runs every job still queued, then stops the worker and frees d.
 * Nothing may call defer_run on d meanwhile or afterwards. */
void defer_free(struct defer *d);

#endif
