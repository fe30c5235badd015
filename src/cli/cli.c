#include "cli/cli.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/crypto.h"
#include "base/log.h"
#include "store/db.h"
#include "store/migrate.h"
#include "store/tokens.h"
#include "upstream/hsclient.h"

/* Seconds the commands wait for the homeserver or the database. */
#define CLI_TIMEOUT_SECS 10

void cli_print_usage(FILE *out)
{
    fprintf(out, "Usage:\n"
                 "  syncv3                  run the server (configured by the variables below)\n"
                 "  syncv3 check            check the configuration, the homeserver and the database; exit 0 if\n"
                 "                          all is usable, else 1 with one line per problem\n"
                 "  syncv3 migrate status   print the database's schema version and pending migrations\n"
                 "  syncv3 migrate up       apply pending migrations (the server also does this at start)\n"
                 "  syncv3 --version        print the version and commit\n"
                 "  syncv3 --help           print this\n");
}

/* Rewrites s in place as one line: newlines and tabs become spaces, runs of
 * spaces one, no trailing space. Returns s. */
static char *one_line(char *s)
{
    size_t w = 0;
    for (size_t r = 0; s[r]; r++) {
        char c = s[r] == '\n' || s[r] == '\t' || s[r] == '\r' ? ' ' : s[r];
        if (c == ' ' && (w == 0 || s[w - 1] == ' ')) continue;
        s[w++] = c;
    }
    while (w && s[w - 1] == ' ') w--;
    s[w] = '\0';
    return s;
}

/* Connects with a connect timeout (the conninfo's own connect_timeout wins).
 * Returns the connection, or NULL with *err (heap, one line). */
static PGconn *connect_db(const char *conninfo, char **err)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", CLI_TIMEOUT_SECS);
    /* Keywords are applied in order and the expanded dbname comes last, so
     * settings in SYNCV3_DB override ours. */
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const vals[] = {timeout, conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        *err = one_line(xstrdup(PQerrorMessage(c)));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* ---------------------------------------------------------------- check */

/* Counts problems and prints each as one line. */
struct report {
    FILE *out;    /* what was found */
    FILE *errout; /* problems */
    int problems; /* lines printed on errout */
};

static void problem(struct report *r, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void problem(struct report *r, const char *what, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(r->errout, "%s: FAILED: %s\n", what, one_line(msg));
    fflush(r->errout);
    r->problems++;
}

static void check_files(struct report *r, const struct config *cfg)
{
    const char *names[] = {"SYNCV3_TLS_CERT", "SYNCV3_TLS_KEY"};
    const char *paths[] = {cfg->tls_cert, cfg->tls_key};
    for (int i = 0; i < 2; i++)
        if (paths[i] && access(paths[i], R_OK) != 0) problem(r, "config", "cannot read %s=%s", names[i], paths[i]);
}

static void check_homeserver(struct report *r, const struct config *cfg)
{
    /* A copy with a short timeout: a hung homeserver must not hang the check. */
    struct config hc = *cfg;
    hc.http_timeout_secs = CLI_TIMEOUT_SECS;
    struct hsclient *hs = NULL;
    if (hsclient_new(&hs, &hc) < 0) {
        problem(r, "homeserver", "cannot set up the HTTP client");
        return;
    }
    char *versions = NULL, *err = NULL;
    if (hsclient_versions_list(hs, &versions, &err) == HSCLIENT_OK)
        fprintf(r->out, "homeserver: OK, %s answers /_matrix/client/versions (%s)\n", cfg->server,
                *versions ? versions : "no versions listed");
    else
        problem(r, "homeserver", "GET %s/_matrix/client/versions: %s", cfg->server, err ? err : "failed");
    free(versions);
    free(err);
    hsclient_free(hs);
}

/* Decrypts every stored token: a changed SYNCV3_SECRET decrypts none. */
static void check_secret(struct report *r, PGconn *c, const struct config *cfg)
{
    struct store_token *devs = NULL;
    int n = 0;
    char *err = NULL;
    if (store_devices_load(c, &devs, &n, &err) < 0) {
        problem(r, "secret", "cannot read the stored tokens: %s", err ? err : "?");
        free(err);
        return;
    }
    struct token_key key;
    crypto_key_from_secret(&key, cfg->secret);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char *t = crypto_decrypt_token(&key, devs[i].token_encrypted);
        if (t) {
            explicit_bzero(t, strlen(t));
            free(t);
            ok++;
        }
        store_token_release(&devs[i]);
    }
    free(devs);
    explicit_bzero(&key, sizeof key);
    if (n == 0)
        fprintf(r->out, "secret: OK, no stored access tokens yet\n");
    else if (ok == 0)
        problem(r, "secret", "SYNCV3_SECRET decrypts none of the %d stored access tokens (was it changed?)", n);
    else if (ok < n)
        fprintf(r->out, "secret: OK, %d of %d stored access tokens decrypt (%d do not: those devices must sync "
                        "again)\n", ok, n, n - ok);
    else
        fprintf(r->out, "secret: OK, all %d stored access tokens decrypt\n", n);
}

static void check_database(struct report *r, const struct config *cfg)
{
    char *err = NULL;
    PGconn *c = connect_db(cfg->db, &err);
    if (!c) {
        problem(r, "database", "cannot connect (SYNCV3_DB): %s", err);
        free(err);
        return;
    }
    struct migrate_state st;
    if (migrate_status(c, &st, &err) < 0) {
        problem(r, "database", "cannot read the schema version: %s", err ? err : "?");
        free(err);
    } else if (st.foreign) {
        problem(r, "database", "it holds the Go sliding-sync proxy's tables; give syncv3 a database of its own");
    } else if (st.current > st.latest) {
        problem(r, "database", "schema version %d is newer than this syncv3 (knows up to %d); run a newer syncv3",
                st.current, st.latest);
    } else {
        const char *host = PQhost(c), *ver = PQparameterStatus(c, "server_version");
        char where[512];
        if (!host || !*host || *host == '/')
            snprintf(where, sizeof where, "socket %s", host && *host ? host : "(default)");
        else
            snprintf(where, sizeof where, "%s:%s", host, PQport(c));
        fprintf(r->out, "database: OK, PostgreSQL %s at %s, database %s as %s; schema version %d of %d",
                ver ? ver : "?", where, PQdb(c), PQuser(c), st.current, st.latest);
        if (st.current < st.latest)
            fprintf(r->out, " (%d pending, applied at start)", st.latest - st.current);
        fputc('\n', r->out);
        if (st.current == st.latest)
            check_secret(r, c, cfg);
        else
            fprintf(r->out, "secret: not checked until the schema is current\n");
    }
    migrate_state_release(&st);
    PQfinish(c);
}

int cli_check(config_getenv_fn get, FILE *out, FILE *errout)
{
    struct report r = {out, errout, 0};
    struct config cfg;
    char *err = NULL;
    enum log_level saved = log_threshold;
    log_threshold = LOG_ERROR; /* the lines below say what matters */
    if (config_load(&cfg, get, &err) != CONFIG_OK) {
        problem(&r, "config", "%s", err);
        free(err);
        config_release(&cfg);
        log_threshold = saved;
        fprintf(errout, "syncv3 check: 1 problem\n");
        return 1;
    }
    fprintf(out, "config: OK, homeserver %s, listening on %s%s, metrics %s%s, log level %s, format %s\n",
            cfg.server, cfg.bindaddr, cfg.tls_cert ? " (TLS)" : "", cfg.prom ? "on " : "off", cfg.prom ? cfg.prom : "",
            log_level_word(cfg.log_level), cfg.log_format == LOG_FORMAT_JSON ? "json" : "text");
    check_files(&r, &cfg);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    check_homeserver(&r, &cfg);
    check_database(&r, &cfg);
    curl_global_cleanup();
    config_release(&cfg);
    log_threshold = saved;
    if (r.problems) {
        fprintf(errout, "syncv3 check: %d problem%s\n", r.problems, r.problems == 1 ? "" : "s");
        return 1;
    }
    fprintf(out, "syncv3 check: all good\n");
    return 0;
}

/* ---------------------------------------------------------------- migrate */

static void print_state(FILE *out, const struct migrate_state *st)
{
    fprintf(out, "schema version: %d (this syncv3 knows up to %d)\n", st->current, st->latest);
    if (st->foreign) fprintf(out, "note: this database holds the Go sliding-sync proxy's tables\n");
    if (st->current > st->latest) fprintf(out, "note: the database is newer than this syncv3; run a newer one\n");
    fprintf(out, "applied:%s\n", st->n_applied ? "" : " none");
    for (int i = 0; i < st->n_applied; i++)
        fprintf(out, "  %s  %s\n", st->applied[i].name, st->applied[i].applied_at);
    int pending = 0;
    for (int i = 0; i < store_migrations_count; i++)
        if (store_migrations[i].version > st->current) pending++;
    fprintf(out, "pending:%s\n", pending ? "" : " none");
    for (int i = 0; i < store_migrations_count; i++)
        if (store_migrations[i].version > st->current) fprintf(out, "  %s\n", store_migrations[i].name);
}

int cli_migrate(int argc, char **argv, config_getenv_fn get, FILE *out, FILE *errout)
{
    bool up = argc == 1 && strcmp(argv[0], "up") == 0;
    if (argc != 1 || (!up && strcmp(argv[0], "status") != 0)) {
        fprintf(errout, "usage: syncv3 migrate status | syncv3 migrate up\n");
        return 2;
    }
    const char *db = get("SYNCV3_DB");
    if (!db || !*db) {
        fprintf(errout, "syncv3 migrate: SYNCV3_DB is not set\n");
        return 1;
    }
    char *err = NULL;
    PGconn *c = connect_db(db, &err);
    if (!c) {
        fprintf(errout, "syncv3 migrate: cannot connect to the database (SYNCV3_DB): %s\n", err);
        free(err);
        return 1;
    }
    int rc = 0;
    if (up && migrate_up(c, &err) < 0) {
        fprintf(errout, "syncv3 migrate: %s\n", err ? one_line(err) : "migration failed");
        free(err);
        err = NULL;
        rc = 1;
    }
    struct migrate_state st;
    if (migrate_status(c, &st, &err) < 0) {
        fprintf(errout, "syncv3 migrate: cannot read the schema version: %s\n", err ? one_line(err) : "?");
        free(err);
        rc = 1;
    } else {
        print_state(out, &st);
    }
    migrate_state_release(&st);
    PQfinish(c);
    return rc;
}
