/* Crash reports: a handler for SIGSEGV, SIGBUS, SIGFPE and SIGABRT that
 * writes a small text file (signal, fault address, time, release, raw stack
 * frames) using only async-signal-safe calls, then lets the signal kill the
 * process as it would have. The next start reads those files and turns each
 * into a Sentry event (obs/sentry.c sends it, then removes the file).
 *
 * A file is written as ".syncv3-crash-<pid>.tmp" and renamed to
 * "syncv3-crash-<unix time>-<pid>.txt" once complete, so a reader never sees
 * half a report. */
#ifndef SYNCV3_OBS_CRASH_H
#define SYNCV3_OBS_CRASH_H

#include <jansson.h>
#include <stddef.h>

/* Installs the handlers (process-wide, once). dir: where reports go (must
 * exist; copied); release: e.g. "syncv3@1.2.3" (copied). Also gives the
 * calling thread an alternate signal stack, so a stack overflow there is
 * still reported. Returns 0, or -1 when dir is too long. */
int crash_install(const char *dir, const char *release);
/* Puts back the handlers that were there before. No-op when not installed. */
void crash_uninstall(void);

/* The complete reports waiting in dir, as a NULL-terminated heap array of
 * heap paths (free each and the array), oldest first. Never NULL. */
char **crash_pending(const char *dir);
/* Reads one report and returns the Sentry event it describes (level, timestamp,
 * release, message, tags, exception with the stack frames), without
 * event_id/platform/environment; NULL if the file is not a crash report. */
json_t *crash_read_event(const char *path);

#endif
