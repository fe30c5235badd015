#include "base/config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

static const struct {
    const char *name;
    const char *def;
    const char *desc;
} vars[] = {
    {"SYNCV3_SERVER", NULL,
     "Required. Homeserver client-server API base URL (https://... or http://...), or the "
     "absolute path of a unix socket the homeserver listens on."},
    {"SYNCV3_DB", NULL, "Required. PostgreSQL connection string (libpq key=value or URL)."},
    {"SYNCV3_SECRET", NULL,
     "Required. Secret that encrypts stored access tokens; must never change for the life of "
     "the database (e.g. openssl rand -hex 32)."},
    {"SYNCV3_BINDADDR", "0.0.0.0:8008",
     "Address to listen on: host:port, or the absolute path of a unix socket."},
    {"SYNCV3_TLS_CERT", "", "PEM certificate for HTTPS on SYNCV3_BINDADDR (needs SYNCV3_TLS_KEY)."},
    {"SYNCV3_TLS_KEY", "", "PEM private key for HTTPS on SYNCV3_BINDADDR (needs SYNCV3_TLS_CERT)."},
    {"SYNCV3_PPROF", "", "host:port of a profiling listener (CPU and heap profiles)."},
    {"SYNCV3_PROM", "", "host:port of a Prometheus listener serving /metrics."},
    {"SYNCV3_JAEGER_URL", "", "Legacy tracing collector URL (use SYNCV3_OTLP_URL)."},
    {"SYNCV3_OTLP_URL", "", "OTLP/HTTP trace collector base URL, without a path."},
    {"SYNCV3_OTLP_USERNAME", "", "Basic-auth user for SYNCV3_OTLP_URL."},
    {"SYNCV3_OTLP_PASSWORD", "", "Basic-auth password for SYNCV3_OTLP_URL."},
    {"SYNCV3_SENTRY_DSN", "", "Sentry DSN for error reports."},
    {"SYNCV3_SENTRY_ENVIRONMENT", "production", "The environment name error reports carry."},
    {"SYNCV3_SENTRY_CRASH_DIR", "$TMPDIR or /tmp",
     "Directory where a crash leaves its report, sent at the next start (with SYNCV3_SENTRY_DSN)."},
    {"SYNCV3_LOG_LEVEL", "info", "trace, debug, info, warn, error or fatal."},
    {"SYNCV3_LOG_FORMAT", "text", "text (one readable line per event) or json (one JSON object per line)."},
    {"SYNCV3_DEBUG", "", "1 = trace logging and fail-fast assertions."},
    {"SYNCV3_MAX_DB_CONN", "0", "Most PostgreSQL connections to open; 0 = 8."},
    {"SYNCV3_DB_IDLE_TIMEOUT_SECS", "3600", "Close database connections idle this long; 0 = never."},
    {"SYNCV3_HTTP_TIMEOUT_SECS", "300", "Total timeout of a request to the homeserver."},
    {"SYNCV3_HTTP_INITIAL_TIMEOUT_SECS", "1800",
     "Total timeout of a device's first /sync (initial syncs can be slow)."},
};

void config_print_help(FILE *out)
{
    fprintf(out, "syncv3 is configured by environment variables:\n\n");
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *def = vars[i].def ? (*vars[i].def ? vars[i].def : "unset") : "required";
        fprintf(out, "  %-34s [%s]\n      %s\n", vars[i].name, def, vars[i].desc);
    }
}

static char *dup_or_null(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

static int parse_int(const char *name, const char *v, int def, int *out, char **err)
{
    if (!v || !*v) {
        *out = def;
        return 0;
    }
    errno = 0;
    char *end;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < 0 || n > INT_MAX) {
        *err = xasprintf("%s must be a non-negative integer, got '%s'", name, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

int config_split_hostport(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon) return -1;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    errno = 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || p < 0 || p > 65535) return -1;
    *host = xstrndup(h, hlen);
    *port = (int)p;
    return 0;
}

static int valid_http_url(const char *u)
{
    const char *rest;
    if (strncmp(u, "http://", 7) == 0)
        rest = u + 7;
    else if (strncmp(u, "https://", 8) == 0)
        rest = u + 8;
    else
        return 0;
    return *rest && *rest != '/' && !strchr(u, ' ');
}

enum config_result config_load(struct config *c, config_getenv_fn get, char **err)
{
    *c = (struct config){0};
    *err = NULL;
    static const char *const required[] = {"SYNCV3_SERVER", "SYNCV3_DB", "SYNCV3_SECRET"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = get(required[i]);
        if (!v || !*v) {
            *err = xasprintf("%s is not set", required[i]);
            return CONFIG_MISSING;
        }
    }

    c->server = xstrdup(get("SYNCV3_SERVER"));
    size_t n = strlen(c->server);
    while (n > 1 && c->server[n - 1] == '/') c->server[--n] = '\0';
    c->server_is_unix = c->server[0] == '/';
    if (!c->server_is_unix && !valid_http_url(c->server)) {
        *err = xasprintf("SYNCV3_SERVER must be an http:// or https:// URL or an absolute unix "
                         "socket path, got '%s'", c->server);
        return CONFIG_INVALID;
    }
    c->db = xstrdup(get("SYNCV3_DB"));
    c->secret = xstrdup(get("SYNCV3_SECRET"));

    const char *bind = get("SYNCV3_BINDADDR");
    c->bindaddr = xstrdup(bind && *bind ? bind : "0.0.0.0:8008");
    c->bind_is_unix = c->bindaddr[0] == '/';
    if (!c->bind_is_unix && config_split_hostport(c->bindaddr, &c->bind_host, &c->bind_port) < 0) {
        *err = xasprintf("SYNCV3_BINDADDR must be host:port or an absolute unix socket path, got '%s'",
                         c->bindaddr);
        return CONFIG_INVALID;
    }

    c->tls_cert = dup_or_null(get("SYNCV3_TLS_CERT"));
    c->tls_key = dup_or_null(get("SYNCV3_TLS_KEY"));
    if (!c->tls_cert != !c->tls_key) {
        *err = xasprintf("SYNCV3_TLS_CERT and SYNCV3_TLS_KEY must be set together");
        return CONFIG_INVALID;
    }

    c->pprof = dup_or_null(get("SYNCV3_PPROF"));
    c->prom = dup_or_null(get("SYNCV3_PROM"));
    char *h = NULL;
    int p;
    const char *listen_vars[] = {"SYNCV3_PPROF", "SYNCV3_PROM"};
    const char *listen_vals[] = {c->pprof, c->prom};
    for (int i = 0; i < 2; i++) {
        if (listen_vals[i] && config_split_hostport(listen_vals[i], &h, &p) < 0) {
            *err = xasprintf("%s must be host:port (e.g. :2112), got '%s'", listen_vars[i], listen_vals[i]);
            return CONFIG_INVALID;
        }
        free(h);
        h = NULL;
    }

    c->jaeger_url = dup_or_null(get("SYNCV3_JAEGER_URL"));
    c->otlp_url = dup_or_null(get("SYNCV3_OTLP_URL"));
    c->otlp_username = dup_or_null(get("SYNCV3_OTLP_USERNAME"));
    c->otlp_password = dup_or_null(get("SYNCV3_OTLP_PASSWORD"));
    c->sentry_dsn = dup_or_null(get("SYNCV3_SENTRY_DSN"));
    c->sentry_environment = dup_or_null(get("SYNCV3_SENTRY_ENVIRONMENT"));
    c->sentry_crash_dir = dup_or_null(get("SYNCV3_SENTRY_CRASH_DIR"));
    if (c->jaeger_url && !valid_http_url(c->jaeger_url)) {
        *err = xasprintf("SYNCV3_JAEGER_URL must be an http(s) URL, got '%s'", c->jaeger_url);
        return CONFIG_INVALID;
    }
    if (c->otlp_url) {
        const char *after = strstr(c->otlp_url, "://");
        if (!valid_http_url(c->otlp_url) || (after && strchr(after + 3, '/'))) {
            *err = xasprintf("SYNCV3_OTLP_URL must be an http(s) URL without a path, got '%s'",
                             c->otlp_url);
            return CONFIG_INVALID;
        }
    }
    if (!c->otlp_username != !c->otlp_password) {
        *err = xasprintf("SYNCV3_OTLP_USERNAME and SYNCV3_OTLP_PASSWORD must be set together");
        return CONFIG_INVALID;
    }
    if (c->sentry_dsn && !valid_http_url(c->sentry_dsn)) {
        *err = xasprintf("SYNCV3_SENTRY_DSN must be an http(s) DSN, got '%s'", c->sentry_dsn);
        return CONFIG_INVALID;
    }
    if (c->sentry_crash_dir && c->sentry_crash_dir[0] != '/') {
        *err = xasprintf("SYNCV3_SENTRY_CRASH_DIR must be an absolute path, got '%s'", c->sentry_crash_dir);
        return CONFIG_INVALID;
    }

    const char *dbg = get("SYNCV3_DEBUG");
    c->debug = dbg && strcmp(dbg, "1") == 0;
    const char *lvl = get("SYNCV3_LOG_LEVEL");
    c->log_level = LOG_INFO;
    if (lvl && *lvl && log_level_parse(lvl, &c->log_level) < 0) {
        *err = xasprintf("SYNCV3_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal; got '%s'",
                         lvl);
        return CONFIG_INVALID;
    }
    if (c->debug) c->log_level = LOG_TRACE;
    const char *lfmt = get("SYNCV3_LOG_FORMAT");
    c->log_format = LOG_FORMAT_TEXT;
    if (lfmt && *lfmt && log_format_parse(lfmt, &c->log_format) < 0) {
        *err = xasprintf("SYNCV3_LOG_FORMAT must be text or json; got '%s'", lfmt);
        return CONFIG_INVALID;
    }

    if (parse_int("SYNCV3_MAX_DB_CONN", get("SYNCV3_MAX_DB_CONN"), 0, &c->max_db_conn, err) < 0 ||
        parse_int("SYNCV3_DB_IDLE_TIMEOUT_SECS", get("SYNCV3_DB_IDLE_TIMEOUT_SECS"), 3600,
                  &c->db_idle_timeout_secs, err) < 0 ||
        parse_int("SYNCV3_HTTP_TIMEOUT_SECS", get("SYNCV3_HTTP_TIMEOUT_SECS"), 300,
                  &c->http_timeout_secs, err) < 0 ||
        parse_int("SYNCV3_HTTP_INITIAL_TIMEOUT_SECS", get("SYNCV3_HTTP_INITIAL_TIMEOUT_SECS"), 1800,
                  &c->http_initial_timeout_secs, err) < 0)
        return CONFIG_INVALID;
    return CONFIG_OK;
}

void config_release(struct config *c)
{
    char **fields[] = {&c->server,     &c->db,         &c->secret,        &c->bindaddr,
                       &c->bind_host,  &c->tls_cert,   &c->tls_key,       &c->pprof,
                       &c->prom,       &c->jaeger_url, &c->otlp_url,      &c->otlp_username,
                       &c->otlp_password, &c->sentry_dsn, &c->sentry_environment, &c->sentry_crash_dir};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        free(*fields[i]);
        *fields[i] = NULL;
    }
}
