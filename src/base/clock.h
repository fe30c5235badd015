/* Clocks in milliseconds. */
#ifndef SYNCV3_BASE_CLOCK_H
#define SYNCV3_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds, for deadlines and durations. */
int64_t clock_mono_ms(void);
/* Monotonic seconds with nanosecond resolution, for histograms. */
double clock_mono_secs(void);
/* Wall-clock milliseconds since the epoch. */
int64_t clock_wall_ms(void);
/* The time ms from now on clock id (as pthread_cond_timedwait wants it). */
struct timespec clock_abs_in(clockid_t id, int64_t ms);

#endif
