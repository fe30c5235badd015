#include "store/tokens.h"

#include <stdlib.h>

#include "base/alloc.h"
#include "store/db.h"

void store_token_release(struct store_token *t)
{
    free(t->token_hash);
    free(t->token_encrypted);
    free(t->user_id);
    free(t->device_id);
    free(t->since);
    *t = (struct store_token){0};
}

static char *dup_col(PGresult *r, int row, int col)
{
    const char *v = db_get_str(r, row, col);
    return xstrdup(v ? v : "");
}

int store_token_get(PGconn *c, const char *hash, struct store_token *out, char **err)
{
    const char *p[] = {hash};
    PGresult *r = db_exec(c, err,
                          "SELECT token_hash, token_encrypted, user_id, device_id FROM syncv3_sync2_tokens "
                          "WHERE token_hash = $1",
                          1, p);
    if (!r) return -1;
    int found = PQntuples(r) == 1;
    if (found) {
        *out = (struct store_token){dup_col(r, 0, 0), dup_col(r, 0, 1), dup_col(r, 0, 2), dup_col(r, 0, 3),
                                    NULL};
        const char *t[] = {hash};
        PGresult *u = db_exec(c, NULL,
                              "UPDATE syncv3_sync2_tokens SET last_seen = now() WHERE token_hash = $1 "
                              "AND last_seen < now() - interval '1 day'",
                              1, t);
        PQclear(u);
    }
    PQclear(r);
    return found;
}

int store_token_put(PGconn *c, const char *hash, const char *encrypted, const char *user_id,
                    const char *device_id, char **err)
{
    const char *p[] = {hash, encrypted, user_id, device_id};
    if (db_begin(c, err) < 0) return -1;
    if (db_cmd(c, err,
               "INSERT INTO syncv3_sync2_tokens (token_hash, token_encrypted, user_id, device_id) "
               "VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE SET last_seen = now()",
               4, p) < 0 ||
        db_cmd(c, err,
               "INSERT INTO syncv3_sync2_devices (user_id, device_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
               2, p + 2) < 0 ||
        db_commit(c, err) < 0) {
        db_rollback(c);
        return -1;
    }
    return 0;
}

int store_token_delete(PGconn *c, const char *hash, char **err)
{
    const char *p[] = {hash};
    return db_cmd(c, err, "DELETE FROM syncv3_sync2_tokens WHERE token_hash = $1", 1, p);
}

int store_tokens_delete_older(PGconn *c, const char *user_id, const char *device_id, const char *hash,
                              char ***old, int *n, char **err)
{
    *old = NULL;
    *n = 0;
    const char *p[] = {user_id, device_id, hash};
    PGresult *r = db_exec(c, err,
                          "DELETE FROM syncv3_sync2_tokens WHERE user_id = $1 AND device_id = $2 "
                          "AND token_hash <> $3 AND last_seen <= "
                          "(SELECT last_seen FROM syncv3_sync2_tokens WHERE token_hash = $3) "
                          "RETURNING token_hash",
                          3, p);
    if (!r) return -1;
    *n = PQntuples(r);
    if (*n) {
        *old = xcalloc((size_t)*n, sizeof **old);
        for (int i = 0; i < *n; i++) (*old)[i] = dup_col(r, i, 0);
    }
    PQclear(r);
    return 0;
}

char *store_device_since(PGconn *c, const char *user_id, const char *device_id, char **err)
{
    const char *p[] = {user_id, device_id};
    PGresult *r = db_exec(c, err,
                          "SELECT since FROM syncv3_sync2_devices WHERE user_id = $1 AND device_id = $2", 2, p);
    if (!r) return NULL;
    char *s = PQntuples(r) ? dup_col(r, 0, 0) : xstrdup("");
    PQclear(r);
    return s;
}

int store_devices_load(PGconn *c, struct store_token **out, int *n, char **err)
{
    PGresult *r = db_exec(c, err,
                          "SELECT DISTINCT ON (t.user_id, t.device_id) t.token_hash, t.token_encrypted, "
                          "t.user_id, t.device_id, d.since FROM syncv3_sync2_tokens t "
                          "JOIN syncv3_sync2_devices d ON d.user_id = t.user_id AND d.device_id = t.device_id "
                          "ORDER BY t.user_id, t.device_id, t.last_seen DESC",
                          0, NULL);
    if (!r) return -1;
    *n = PQntuples(r);
    *out = xcalloc((size_t)(*n ? *n : 1), sizeof **out);
    for (int i = 0; i < *n; i++)
        (*out)[i] = (struct store_token){dup_col(r, i, 0), dup_col(r, i, 1), dup_col(r, i, 2),
                                         dup_col(r, i, 3), dup_col(r, i, 4)};
    PQclear(r);
    return 0;
}
