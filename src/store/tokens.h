/* Access tokens and polled devices (syncv3_sync2_tokens, syncv3_sync2_devices). */
#ifndef SYNCV3_STORE_TOKENS_H
#define SYNCV3_STORE_TOKENS_H

#include <libpq-fe.h>

/* A token row. Strings are heap; release with store_token_release. */
struct store_token {
    char *token_hash;      /* hex SHA-256 of the token */
    char *token_encrypted; /* AES-GCM text, see base/crypto.h */
    char *user_id;         /* owner */
    char *device_id;       /* device */
    char *since;           /* the device's since token ("" = never synced); only from store_devices_load */
};

void store_token_release(struct store_token *t);

/* Looks a token up by hash. Returns 1 found (fills *out), 0 not found, -1 error. */
int store_token_get(PGconn *c, const char *hash, struct store_token *out, char **err);
/* Remembers a token and its device (the device keeps its since if known), and
 * refreshes last_seen when it is over a day old. Returns 0 or -1. */
int store_token_put(PGconn *c, const char *hash, const char *encrypted, const char *user_id,
                    const char *device_id, char **err);
int store_token_delete(PGconn *c, const char *hash, char **err);
/* Deletes the device's tokens older than token hash (rows last seen no later
 * than its row; nothing when it has no row). *old receives the deleted hashes
 * (a heap array of *n heap strings, NULL when none; free each, then the
 * array). Returns 0 or -1. */
int store_tokens_delete_older(PGconn *c, const char *user_id, const char *device_id, const char *hash,
                              char ***old, int *n, char **err);
/* The device's since token (heap, "" if none) or NULL on error. */
char *store_device_since(PGconn *c, const char *user_id, const char *device_id, char **err);
/* Every device with a token: its newest token and since. *out is a heap array
 * of *n entries (release each, then free). Returns 0 or -1. */
int store_devices_load(PGconn *c, struct store_token **out, int *n, char **err);

#endif
