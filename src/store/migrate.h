/* Numbered schema migrations, compiled into the binary from
 * src/store/migrations/NNNN_name.sql (see scripts/embed-migrations.sh). */
#ifndef SYNCV3_STORE_MIGRATE_H
#define SYNCV3_STORE_MIGRATE_H

#include <libpq-fe.h>

struct migration {
    int version;       /* NNNN from the file name; strictly increasing */
    const char *name;  /* file name without .sql */
    const char *sql;   /* the statements */
};

extern const struct migration store_migrations[];
extern const int store_migrations_count;

/* Applies every migration newer than the database's version, each in its own
 * transaction together with its row in syncv3_schema_version. Refuses a
 * database written by a newer syncv3 or by the Go proxy. Returns 0 or -1 with
 * *err (heap). */
int migrate_up(PGconn *c, char **err);

#endif
