/* Numbered schema migrations, compiled into the binary from
 * src/store/migrations/NNNN_name.sql (see scripts/embed-migrations.sh). */
#ifndef SYNCV3_STORE_MIGRATE_H
#define SYNCV3_STORE_MIGRATE_H

#include <libpq-fe.h>
#include <stdbool.h>

struct migration {
    int version;       /* NNNN from the file name; strictly increasing */
    const char *name;  /* file name without .sql */
    const char *sql;   /* the statements */
};

extern const struct migration store_migrations[];
extern const int store_migrations_count;

/* The newest version this binary knows (0 when it has no migrations). */
int migrate_latest(void);

/* One row of syncv3_schema_version. */
struct migrate_applied {
    int version;      /* migration number */
    char *name;       /* its file name without .sql */
    char *applied_at; /* when, ISO 8601 UTC */
};

/* The database's schema as read by migrate_status. */
struct migrate_state {
    int current;                     /* newest applied version; 0 = none */
    int latest;                      /* newest version this binary knows */
    bool foreign;                    /* written by the Go proxy (migrate_up refuses it) */
    int n_applied;                   /* entries in applied */
    struct migrate_applied *applied; /* applied migrations, oldest first (heap) */
};

/* Reads the schema version without changing anything (a database syncv3
 * never touched has current 0 and no rows). Returns 0, or -1 with *err
 * (heap). Release *st with migrate_state_release in both cases. */
int migrate_status(PGconn *c, struct migrate_state *st, char **err);
void migrate_state_release(struct migrate_state *st);

/* Applies every migration newer than the database's version, each in its own
 * transaction together with its row in syncv3_schema_version. Refuses a
 * database written by a newer syncv3 or by the Go proxy. Returns 0 or -1 with
 * *err (heap). */
int migrate_up(PGconn *c, char **err);

#endif
