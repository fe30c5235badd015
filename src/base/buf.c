#include "base/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

void buf_init(struct buf *b, size_t max)
{
    *b = (struct buf){.max = max};
}

void buf_release(struct buf *b)
{
    free(b->ptr);
    *b = (struct buf){.max = b->max};
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->ptr) b->ptr[0] = '\0';
}

static int reserve(struct buf *b, size_t extra)
{
    if (b->max && (extra > b->max || b->len > b->max - extra)) return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    b->ptr = xrealloc(b->ptr, cap);
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    if (reserve(b, n) < 0) return -1;
    if (n) memcpy(b->ptr + b->len, data, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return 0;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) < 0) return -1;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int buf_json_str(struct buf *b, const char *s, size_t n)
{
    size_t start = b->len;
    if (buf_putc(b, '"') < 0) return -1;
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
        }
        if (esc) {
            if (buf_append(b, s + run, i - run) < 0 || buf_puts(b, esc) < 0) goto fail;
            run = i + 1;
        }
    }
    if (buf_append(b, s + run, n - run) < 0 || buf_putc(b, '"') < 0) goto fail;
    return 0;
fail:
    buf_truncate(b, start);
    return -1;
}

void buf_truncate(struct buf *b, size_t newlen)
{
    if (newlen < b->len) {
        b->len = newlen;
        b->ptr[newlen] = '\0';
    }
}

char *buf_detach(struct buf *b, size_t *len_out)
{
    char *p = b->ptr ? b->ptr : xstrdup("");
    if (len_out) *len_out = b->len;
    *b = (struct buf){.max = b->max};
    return p;
}
