#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

enum log_level log_threshold = LOG_INFO;
void (*log_fatal_hook)(const char *module, const char *message);

static const char *const names[] = {"TRC", "DBG", "INF", "WRN", "ERR", "FTL"};

int log_level_parse(const char *s, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level level;
    } table[] = {
        {"trace", LOG_TRACE}, {"debug", LOG_DEBUG}, {"info", LOG_INFO},   {"warn", LOG_WARN},
        {"err", LOG_ERROR},   {"error", LOG_ERROR}, {"fatal", LOG_FATAL},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcasecmp(s, table[i].name) == 0) {
            *out = table[i].level;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level l)
{
    return (unsigned)l < sizeof names / sizeof names[0] ? names[l] : "???";
}

void log_write(enum log_level lvl, const char *module, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* One fprintf per line: stdio locks the stream, so lines never interleave. */
    fprintf(stderr, "%02d:%02d:%02d.%03ld %s [%s] %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, log_level_name(lvl), module, msg);
    if (lvl == LOG_FATAL && log_fatal_hook) log_fatal_hook(module, msg);
}
