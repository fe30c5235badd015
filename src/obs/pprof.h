/* The profiling listener (SYNCV3_PPROF), a listener of its own, never the
 * client port:
 *
 *   GET /debug/pprof/                     a short index (text)
 *   GET /debug/pprof/profile?seconds=N    a CPU profile of the whole process
 *                                         over N seconds (default 30, 1..300),
 *                                         gperftools' format; one at a time
 *                                         (another gets 429 M_LIMIT_EXCEEDED)
 *   GET /debug/pprof/heap                 tcmalloc's sampled heap profile
 *                                         (text); 501 in builds without
 *                                         tcmalloc (sanitizer builds)
 *
 * Both read with google-pprof or go tool pprof against the binary. Errors
 * are Matrix-style JSON. One libmicrohttpd thread per connection (a CPU
 * profile holds its connection for N seconds), at most 8 connections.
 * Nothing runs while it is not configured. */
#ifndef SYNCV3_OBS_PPROF_H
#define SYNCV3_OBS_PPROF_H

struct pprof_server;

/* In tcmalloc builds, turns heap sampling on: a sample about every 512 KiB
 * allocated, unless TCMALLOC_SAMPLE_PARAMETER (read by tcmalloc at start)
 * says otherwise. Call before other threads start: a thread that already
 * allocated notices only after its next 8 MiB. No-op in other builds. */
void pprof_heap_sampling_on(void);
/* Listens on addr ("host:port") and serves the endpoints above. On success
 * *out is set and 0 returned; else -1 (logged) and *out NULL. */
int pprof_server_start(struct pprof_server **out, const char *addr);
/* The bound TCP port. */
int pprof_server_port(const struct pprof_server *p);
/* Ends a profile in progress (its client gets what was collected), stops
 * the listener and frees p. NULL is a no-op. */
void pprof_server_stop(struct pprof_server *p);

#endif
