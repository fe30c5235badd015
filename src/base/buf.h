/* A growable byte buffer with an optional upper bound, and a non-owning slice.
 *
 * struct buf owns ptr; after any successful append, ptr[len] == '\0' so the
 * contents can be used as a C string. Appends that would take len past max
 * (when max != 0) fail with -1 and leave the buffer unchanged. */
#ifndef SYNCV3_BASE_BUF_H
#define SYNCV3_BASE_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *ptr;  /* contents, NUL-terminated once non-empty; NULL when never written */
    size_t len; /* bytes used, not counting the terminator */
    size_t cap; /* bytes allocated */
    size_t max; /* largest len allowed; 0 = unbounded */
};

/* A view into memory owned by someone else. */
struct slice {
    const char *p; /* first byte */
    size_t len;    /* byte count */
};

#define BUF_INIT {NULL, 0, 0, 0}

void buf_init(struct buf *b, size_t max);
/* Frees the contents; the buffer may be reused after buf_init. */
void buf_release(struct buf *b);
/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s (n bytes) as a quoted JSON string, escaping as RFC 8259 requires. */
int buf_json_str(struct buf *b, const char *s, size_t n);
/* Drops the last n bytes (or everything if n > len). */
void buf_truncate(struct buf *b, size_t newlen);
/* Hands the contents to the caller (free() it); the buffer becomes empty.
 * Never returns NULL: an empty buffer yields "". */
char *buf_detach(struct buf *b, size_t *len_out);

static inline const char *buf_cstr(const struct buf *b) { return b->ptr ? b->ptr : ""; }
static inline bool slice_eq(struct slice s, const char *z);

#include <string.h>
static inline bool slice_eq(struct slice s, const char *z)
{
    size_t n = strlen(z);
    return s.len == n && memcmp(s.p, z, n) == 0;
}

#endif
