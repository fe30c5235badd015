/* tcmalloc's sampled heap profile, for /debug/pprof/heap. Only in builds
 * linked with tcmalloc (SYNCV3_TCMALLOC); the implementation is a few lines
 * of C++ (heapsample.cc) because gperftools offers this call only in its C++
 * interface. */
#ifndef SYNCV3_OBS_HEAPSAMPLE_H
#define SYNCV3_OBS_HEAPSAMPLE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Turns allocation sampling on (one sample about every `bytes` allocated)
 * unless TCMALLOC_SAMPLE_PARAMETER was given in the environment, which then
 * wins. Takes effect within a few MiB of allocation on every thread. */
void heapsample_enable(long bytes);
/* The current heap sample in the text format pprof reads ("heap_v2/…"),
 * as a heap string (free()) of *len bytes. Never NULL. */
char *heapsample_take(size_t *len);

#ifdef __cplusplus
}
#endif

#endif
