#include "store/migrate.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/log.h"
#include "store/db.h"

static const char foreign_msg[] =
    "this database was written by the Go sliding-sync proxy; give syncv3 a database of its own "
    "(everything but pending to-device messages is re-fetched from the homeserver)";

/* Whether the Go proxy's and our version tables exist. Returns 0 or -1. */
static int find_tables(PGconn *c, bool *goose, bool *ours, char **err)
{
    PGresult *r = db_exec(c, err, "SELECT to_regclass('goose_db_version') IS NOT NULL, "
                                  "to_regclass('syncv3_schema_version') IS NOT NULL", 0, NULL);
    if (!r) return -1;
    *goose = PQgetvalue(r, 0, 0)[0] == 't';
    *ours = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    return 0;
}

int migrate_latest(void)
{
    return store_migrations_count ? store_migrations[store_migrations_count - 1].version : 0;
}

int migrate_status(PGconn *c, struct migrate_state *st, char **err)
{
    *st = (struct migrate_state){.latest = migrate_latest()};
    bool goose, ours;
    if (find_tables(c, &goose, &ours, err) < 0) return -1;
    st->foreign = goose && !ours;
    if (!ours) return 0;
    PGresult *r = db_exec(c, err,
                          "SELECT version, name, to_char(applied_at AT TIME ZONE 'UTC', "
                          "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM syncv3_schema_version ORDER BY version",
                          0, NULL);
    if (!r) return -1;
    st->n_applied = PQntuples(r);
    st->applied = xcalloc(st->n_applied ? (size_t)st->n_applied : 1, sizeof *st->applied);
    for (int i = 0; i < st->n_applied; i++) {
        st->applied[i].version = (int)db_get_i64(r, i, 0);
        st->applied[i].name = xstrdup(PQgetvalue(r, i, 1));
        st->applied[i].applied_at = xstrdup(PQgetvalue(r, i, 2));
        if (st->applied[i].version > st->current) st->current = st->applied[i].version;
    }
    PQclear(r);
    return 0;
}

void migrate_state_release(struct migrate_state *st)
{
    for (int i = 0; i < st->n_applied; i++) {
        free(st->applied[i].name);
        free(st->applied[i].applied_at);
    }
    free(st->applied);
    *st = (struct migrate_state){0};
}

int migrate_up(PGconn *c, char **err)
{
    int rc = -1;
    PGresult *r = NULL;
    /* Serialise concurrent starts of several instances on one database. */
    if (db_cmd(c, err, "SELECT pg_advisory_lock(727372)", 0, NULL) < 0) return -1;
    bool goose, ours;
    if (find_tables(c, &goose, &ours, err) < 0) goto out;
    if (goose && !ours) {
        *err = xstrdup(foreign_msg);
        goto out;
    }
    if (db_cmd(c, err, "CREATE TABLE IF NOT EXISTS syncv3_schema_version (version INT PRIMARY KEY, "
                       "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())", 0, NULL) < 0)
        goto out;
    r = db_exec(c, err, "SELECT COALESCE(max(version), 0) FROM syncv3_schema_version", 0, NULL);
    if (!r) goto out;
    int current = (int)db_get_i64(r, 0, 0);
    PQclear(r);
    r = NULL;
    int newest = migrate_latest();
    if (current > newest) {
        *err = xasprintf("the database schema is version %d but this syncv3 knows only up to %d; "
                         "run a newer syncv3", current, newest);
        goto out;
    }
    for (int i = 0; i < store_migrations_count; i++) {
        const struct migration *m = &store_migrations[i];
        if (m->version <= current) continue;
        LOG_INFO("store", "applying migration %s", m->name);
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m->version);
        const char *params[] = {ver, m->name};
        if (db_begin(c, err) < 0) goto out;
        r = PQexec(c, m->sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            *err = xasprintf("migration %s failed: %s", m->name, PQresultErrorMessage(r));
            db_rollback(c);
            goto out;
        }
        PQclear(r);
        r = NULL;
        if (db_cmd(c, err, "INSERT INTO syncv3_schema_version (version, name) VALUES ($1, $2)", 2,
                   params) < 0 ||
            db_commit(c, err) < 0) {
            db_rollback(c);
            goto out;
        }
    }
    rc = 0;
out:
    PQclear(r);
    PGresult *u = PQexec(c, "SELECT pg_advisory_unlock(727372)");
    PQclear(u);
    return rc;
}
