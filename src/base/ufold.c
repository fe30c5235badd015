#include "base/ufold.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "base/alloc.h"
#include "base/buf.h"

/* s as valid UTF-8 (invalid sequences become U+FFFD) with İ and ı already
 * mapped to i; *len gets its length. Heap, not NUL-terminated. */
static uint8_t *clean(const char *s, size_t *len)
{
    const uint8_t *p = (const uint8_t *)(s ? s : "");
    size_t n = strlen((const char *)p), w = 0;
    /* U+FFFD takes 3 bytes where an invalid byte took 1. */
    uint8_t *out = xmalloc(3 * n + 1);
    for (size_t i = 0; i < n;) {
        ucs4_t uc;
        int k = u8_mbtouc(&uc, p + i, n - i);
        if (k < 1) k = 1;
        i += (size_t)k;
        if (uc == 0x130 || uc == 0x131) uc = 'i';
        int m = u8_uctomb(out + w, uc, 4);
        if (m > 0) w += (size_t)m;
    }
    *len = w;
    return out;
}

/* The case-folded form of s in normalisation form nf, NUL-terminated (heap). */
static char *fold(const char *s, uninorm_t nf)
{
    if (!s) s = "";
    /* ASCII (most names) is its own normal form and folds to lower case. */
    size_t len = 0;
    while (s[len] && !(s[len] & 0x80)) len++;
    if (!s[len]) {
        char *out = xmalloc(len + 1);
        for (size_t i = 0; i <= len; i++) out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
        return out;
    }
    size_t n, flen = 0;
    uint8_t *c = clean(s, &n);
    uint8_t *f = u8_casefold(c, n, NULL, nf, NULL, &flen);
    if (!f) {
        /* Out of memory inside libunistring: the cleaned text is the next best key. */
        f = c;
        flen = n;
        c = NULL;
    }
    char *out = xmalloc(flen + 1);
    memcpy(out, f, flen);
    out[flen] = 0;
    free(f);
    free(c);
    return out;
}

char *ufold_key(const char *s)
{
    return fold(s, UNINORM_NFKC);
}

bool ufold_contains(const char *hay, const char *needle)
{
    if (!needle || !*needle) return true;
    char *h = ufold_key(hay), *n = ufold_key(needle);
    bool found = strstr(h, n) != NULL;
    free(h);
    free(n);
    return found;
}

char *ufold_sort_key(const char *s)
{
    char *full = ufold_key(s);
    char *decomposed = fold(s, UNINORM_NFKD);
    struct buf b = BUF_INIT;
    const uint8_t *p = (const uint8_t *)decomposed;
    size_t n = strlen(decomposed);
    for (size_t i = 0; i < n;) {
        ucs4_t uc;
        int k = u8_mbtouc(&uc, p + i, n - i);
        if (k < 1) k = 1;
        if (!uc_is_general_category(uc, UC_CATEGORY_Mn)) buf_append(&b, p + i, (size_t)k);
        i += (size_t)k;
    }
    buf_putc(&b, '\x01');
    buf_puts(&b, full);
    free(full);
    free(decomposed);
    return buf_detach(&b, NULL);
}
