/* Levelled logging to stderr, one line per event.
 *
 * Text lines: "2026-12-06T18:45:26.123Z INF [module] message" (UTC, ISO 8601
 * with milliseconds). JSON lines (SYNCV3_LOG_FORMAT=json): one object per
 * line with "time", "level", "module" and "message"; the "key=value" words
 * at the start and at the end of the message (as in "POST /sync status=200
 * size=12 user=@a:b") become their own fields and leave the message.
 *
 * The LOG_* macros check the level before evaluating their arguments.
 * Never pass an access token to these functions. */
#ifndef SYNCV3_BASE_LOG_H
#define SYNCV3_BASE_LOG_H

#include <stddef.h>
#include <time.h>

enum log_level {
    LOG_TRACE,
    LOG_DEBUG,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
    LOG_FATAL,
};

enum log_format {
    LOG_FORMAT_TEXT, /* human-readable lines (the default) */
    LOG_FORMAT_JSON, /* one JSON object per line */
};

/* The process-wide threshold and format; set once at start-up before threads run. */
extern enum log_level log_threshold;
extern enum log_format log_output_format;

/* Parses trace|debug|info|warn|err|error|fatal (case-insensitive). Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level l); /* "INF" */
const char *log_level_word(enum log_level l); /* "info" */
/* Parses text|json (case-insensitive). Returns 0 or -1. */
int log_format_parse(const char *s, enum log_format *out);

/* Writes one complete line for the event into out (at most cap bytes, cap >=
 * 256), ending with '\n', never split inside an escape: a message too long is
 * cut, and JSON stays valid. Returns the length written (no NUL). Pure; for
 * tests and log_write. */
size_t log_format_line(char *out, size_t cap, enum log_format fmt, const struct timespec *when,
                       enum log_level lvl, const char *module, const char *msg);

void log_write(enum log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Called with the module and formatted message of every LOG_FATAL line,
 * after it is written (error reporting sets it). NULL = none. Set once at
 * start-up before other threads run. */
extern void (*log_fatal_hook)(const char *module, const char *message);

#define LOG_AT(lvl, mod, ...)                                                  \
    do {                                                                       \
        if ((lvl) >= log_threshold) log_write((lvl), (mod), __VA_ARGS__);      \
    } while (0)
#define LOG_TRACE(mod, ...) LOG_AT(LOG_TRACE, mod, __VA_ARGS__)
#define LOG_DEBUG(mod, ...) LOG_AT(LOG_DEBUG, mod, __VA_ARGS__)
#define LOG_INFO(mod, ...) LOG_AT(LOG_INFO, mod, __VA_ARGS__)
#define LOG_WARN(mod, ...) LOG_AT(LOG_WARN, mod, __VA_ARGS__)
#define LOG_ERROR(mod, ...) LOG_AT(LOG_ERROR, mod, __VA_ARGS__)
#define LOG_FATAL(mod, ...) LOG_AT(LOG_FATAL, mod, __VA_ARGS__)

#endif
