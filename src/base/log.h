/* Levelled logging to stderr. Each line: time, level, module, message.
 * The LOG_* macros check the level before evaluating their arguments.
 * Never pass an access token to these functions. */
#ifndef SYNCV3_BASE_LOG_H
#define SYNCV3_BASE_LOG_H

enum log_level {
    LOG_TRACE,
    LOG_DEBUG,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
    LOG_FATAL,
};

/* The process-wide threshold; set once at start-up before threads run. */
extern enum log_level log_threshold;

/* Parses trace|debug|info|warn|err|error|fatal (case-insensitive). Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level l);

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
