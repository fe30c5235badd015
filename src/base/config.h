/* Configuration from SYNCV3_* environment variables (the original proxy's
 * names and meanings). config_load validates everything it reads. */
#ifndef SYNCV3_BASE_CONFIG_H
#define SYNCV3_BASE_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "base/log.h"

struct config {
    char *server;               /* SYNCV3_SERVER: homeserver base URL (no trailing slash) or unix socket path */
    bool server_is_unix;        /* server names a unix socket */
    char *db;                   /* SYNCV3_DB: libpq connection string */
    char *secret;               /* SYNCV3_SECRET: token encryption secret */
    char *bindaddr;             /* SYNCV3_BINDADDR: host:port or unix socket path */
    bool bind_is_unix;          /* bindaddr names a unix socket */
    char *bind_host;            /* host part of bindaddr (TCP only) */
    int bind_port;              /* port part of bindaddr (TCP only) */
    char *tls_cert;             /* SYNCV3_TLS_CERT: PEM file, or NULL */
    char *tls_key;              /* SYNCV3_TLS_KEY: PEM file, or NULL */
    char *pprof;                /* SYNCV3_PPROF: profiling listener address, or NULL */
    char *prom;                 /* SYNCV3_PROM: metrics listener address, or NULL */
    char *jaeger_url;           /* SYNCV3_JAEGER_URL (legacy tracing), or NULL */
    char *otlp_url;             /* SYNCV3_OTLP_URL: OTLP/HTTP collector base, or NULL */
    char *otlp_username;        /* SYNCV3_OTLP_USERNAME, or NULL */
    char *otlp_password;        /* SYNCV3_OTLP_PASSWORD, or NULL */
    char *sentry_dsn;           /* SYNCV3_SENTRY_DSN, or NULL */
    char *sentry_environment;   /* SYNCV3_SENTRY_ENVIRONMENT, or NULL (= "production") */
    char *sentry_crash_dir;     /* SYNCV3_SENTRY_CRASH_DIR, or NULL (= $TMPDIR, else /tmp) */
    enum log_level log_level;   /* SYNCV3_LOG_LEVEL (SYNCV3_DEBUG=1 forces trace) */
    enum log_format log_format; /* SYNCV3_LOG_FORMAT: text (default) or json */
    bool debug;                 /* SYNCV3_DEBUG=1 */
    int max_db_conn;            /* SYNCV3_MAX_DB_CONN: pool size; 0 = default */
    int db_idle_timeout_secs;   /* SYNCV3_DB_IDLE_TIMEOUT_SECS */
    int http_timeout_secs;      /* SYNCV3_HTTP_TIMEOUT_SECS: normal upstream request timeout */
    int http_initial_timeout_secs; /* SYNCV3_HTTP_INITIAL_TIMEOUT_SECS: first-poll timeout */
};

/* Looks up a variable; returns NULL when unset. getenv fits. */
typedef const char *(*config_getenv_fn)(const char *name);

enum config_result {
    CONFIG_OK = 0,
    CONFIG_MISSING = -1, /* a required variable is unset: *err names it */
    CONFIG_INVALID = -2, /* a value is malformed: *err is one line saying which and why */
};

/* Fills c from the environment. On failure *err is a heap string (free()).
 * c must be released with config_release in every case. */
enum config_result config_load(struct config *c, config_getenv_fn get, char **err);
void config_release(struct config *c);
/* Prints the table of every variable with its description and default. */
void config_print_help(FILE *out);

/* Splits "host:port" (host may be empty or [v6]); returns 0 or -1. host is heap. */
int config_split_hostport(const char *s, char **host, int *port);

#endif
