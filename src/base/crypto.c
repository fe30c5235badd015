#include "base/crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

#define NONCE_LEN 12
#define TAG_LEN 16

void crypto_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes n hex chars (n even) into out; returns 0 or -1. */
static int from_hex(const char *in, size_t n, uint8_t *out)
{
    if (n % 2) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void crypto_sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(data, len, digest);
    crypto_hex(digest, sizeof digest, out);
}

void crypto_key_from_secret(struct token_key *k, const char *secret)
{
    SHA256((const uint8_t *)secret, strlen(secret), k->key);
}

char *crypto_encrypt_token(const struct token_key *k, const char *token)
{
    size_t n = strlen(token);
    uint8_t nonce[NONCE_LEN];
    if (RAND_bytes(nonce, sizeof nonce) != 1) return NULL;
    uint8_t *ct = xmalloc(n + TAG_LEN);
    char *out = NULL;
    int len = 0, fin = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) goto out;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, ct, &len, (const uint8_t *)token, (int)n) != 1 ||
        EVP_EncryptFinal_ex(ctx, ct + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + n) != 1)
        goto out;
    out = xmalloc(2 * NONCE_LEN + 1 + 2 * (n + TAG_LEN) + 1);
    crypto_hex(nonce, NONCE_LEN, out);
    out[2 * NONCE_LEN] = ' ';
    crypto_hex(ct, n + TAG_LEN, out + 2 * NONCE_LEN + 1);
out:
    EVP_CIPHER_CTX_free(ctx);
    free(ct);
    return out;
}

char *crypto_decrypt_token(const struct token_key *k, const char *stored)
{
    const char *sp = strchr(stored, ' ');
    if (!sp || (size_t)(sp - stored) != 2 * NONCE_LEN) return NULL;
    const char *hex = sp + 1;
    size_t hexlen = strlen(hex);
    if (hexlen % 2 || hexlen / 2 < TAG_LEN) return NULL;
    size_t ctlen = hexlen / 2 - TAG_LEN;
    uint8_t nonce[NONCE_LEN];
    uint8_t *ct = xmalloc(hexlen / 2);
    char *plain = xmalloc(ctlen + 1);
    int ok = 0, len = 0, fin = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    if (from_hex(stored, 2 * NONCE_LEN, nonce) < 0 || from_hex(hex, hexlen, ct) < 0) goto out;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx) goto out;
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, nonce) != 1 ||
        EVP_DecryptUpdate(ctx, (uint8_t *)plain, &len, ct, (int)ctlen) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, ct + ctlen) != 1 ||
        EVP_DecryptFinal_ex(ctx, (uint8_t *)plain + len, &fin) != 1)
        goto out;
    plain[ctlen] = '\0';
    ok = 1;
out:
    EVP_CIPHER_CTX_free(ctx);
    free(ct);
    if (!ok) {
        free(plain);
        return NULL;
    }
    return plain;
}
