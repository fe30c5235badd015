/* Allocation wrappers: every allocation in syncv3 goes through these.
 * On out-of-memory they print a message and abort; callers never check for NULL. */
#ifndef SYNCV3_BASE_ALLOC_H
#define SYNCV3_BASE_ALLOC_H

#include <stddef.h>

/* Returns memory the caller frees with free(). Never NULL (aborts on OOM). */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Copies of s (NUL-terminated); xstrndup copies at most n bytes and always terminates. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh heap string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Hands memory the allocator keeps but nobody uses back to the system (after
 * a large transient peak): malloc_trim for glibc, the page heap for tcmalloc. */
void alloc_trim(void);

/* Always-on invariant check: logs file:line and aborts. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) check_failed(__FILE__, __LINE__, #cond);                  \
    } while (0)
_Noreturn void check_failed(const char *file, int line, const char *expr);

#endif
