/* Token hashing and encryption (OpenSSL libcrypto).
 *
 * Access tokens are looked up by the lowercase hex SHA-256 of the token and
 * stored as AES-256-GCM ciphertext under a key derived from SYNCV3_SECRET
 * (key = SHA-256(secret)). Stored form: hex(nonce) " " hex(ciphertext || tag),
 * the same text format as the original proxy, so databases move between them. */
#ifndef SYNCV3_BASE_CRYPTO_H
#define SYNCV3_BASE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

struct token_key {
    uint8_t key[32]; /* AES-256 key */
};

/* Writes the n bytes of in as 2n lowercase hex characters and a NUL into out. */
void crypto_hex(const uint8_t *in, size_t n, char *out);
/* Writes 64 hex characters and a NUL into out. */
void crypto_sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1]);
void crypto_key_from_secret(struct token_key *k, const char *secret);
/* Returns a heap string (free()) or NULL if the CSPRNG or cipher failed. */
char *crypto_encrypt_token(const struct token_key *k, const char *token);
/* Returns the heap plaintext (free()), or NULL if the text is malformed or
 * does not authenticate under this key (e.g. the secret changed). */
char *crypto_decrypt_token(const struct token_key *k, const char *stored);

#endif
