/* Embedded static files. See static.h for the serving rules. */
#include "http/static.h"

#include <string.h>
#include <strings.h>

#include "http/server.h"

/* The page talks to this server (sliding sync, server.json) and, for sending,
 * history and avatars, to the homeserver at whatever origin it has. */
#define HTML_CSP                                                                                               \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src * data: blob:; connect-src *; "         \
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const char *http_static_content_type(const char *name)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot, types[i][0]) == 0) return types[i][1];
    return "application/octet-stream";
}

const struct http_static_file *http_static_find(const struct http_static_file *files, size_t n, const char *rel)
{
    const char *name = rel[0] ? rel : "index.html";
    for (size_t i = 0; i < n; i++)
        if (strcmp(files[i].name, name) == 0) return &files[i];
    return NULL;
}

/* Length of the opaque part ("..." with its quotes) at p, 0 if p is not one. */
static size_t opaque_len(const char *p)
{
    if (*p != '"') return 0;
    const char *e = strchr(p + 1, '"');
    return e ? (size_t)(e - p) + 1 : 0;
}

bool http_static_etag_matches(const char *if_none_match, const char *etag)
{
    if (!if_none_match) return false;
    size_t elen = strlen(etag);
    for (const char *p = if_none_match; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (*p == '*') return true;
        if (strncmp(p, "W/", 2) == 0) p += 2;
        size_t n = opaque_len(p);
        if (n == 0) return false; /* not a list of entity tags: no match */
        if (n == elen && memcmp(p, etag, n) == 0) return true;
        p += n;
    }
    return false;
}

void http_static_answer(struct http_req *req, const char *prefix, const struct http_static_file *files, size_t n,
                        const char *rel)
{
    if (!rel) {
        struct http_header loc[] = {{"Location", prefix}};
        http_req_respond_static(req, 308, NULL, NULL, 0, loc, 1);
        return;
    }
    const struct http_static_file *f = http_static_find(files, n, rel);
    if (!f) {
        http_req_respond_error(req, 404, "M_UNRECOGNIZED", "Unrecognized request");
        return;
    }
    const char *type = http_static_content_type(f->name);
    bool html = strncmp(type, "text/html", 9) == 0;
    struct http_header h[] = {
        {"ETag", f->etag},
        {"Cache-Control", "no-cache"},
        {"X-Content-Type-Options", "nosniff"},
        {"Content-Security-Policy", HTML_CSP},
    };
    size_t nh = html ? 4 : 3;
    if (http_static_etag_matches(http_req_header(req, "If-None-Match"), f->etag))
        http_req_respond_static(req, 304, NULL, NULL, 0, h, nh);
    else
        http_req_respond_static(req, 200, type, f->data, f->len, h, nh);
}
