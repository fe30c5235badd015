/* Files compiled into the binary and served below a URL prefix (the web
 * client at /client/). scripts/embed-webclient.sh turns the files of web/client into the
 * table web_client_files[] at build time, so an installed binary needs no
 * files beside it.
 *
 * Serving rules: only exact names of the table are found (a path with a '/',
 * "..", a percent-encoded trick or anything else not in the table is a JSON
 * 404 M_UNRECOGNIZED, so nothing outside the table can be reached); the empty
 * name is index.html; the prefix without its trailing slash redirects (308)
 * to the prefix. Content types come from the extension. Every file carries a
 * strong ETag (a hash of its contents, computed at build time) and
 * Cache-Control: no-cache, so browsers revalidate each time and a matching
 * If-None-Match costs a 304 without a body. HEAD answers like GET without
 * the body. HTML also carries a Content-Security-Policy that allows only the
 * page's own scripts and styles. */
#ifndef SYNCV3_HTTP_STATIC_H
#define SYNCV3_HTTP_STATIC_H

#include <stdbool.h>
#include <stddef.h>

struct http_req;

struct http_static_file {
    const char *name;          /* file name below the prefix, e.g. "index.html" (no '/') */
    const unsigned char *data; /* the contents (static storage) */
    size_t len;                /* bytes in data */
    const char *etag;          /* strong validator with its quotes: "\"<hex>\"" */
};

/* The web client's files (generated table; see scripts/embed-webclient.sh). */
extern const struct http_static_file web_client_files[];
extern const size_t web_client_files_count;

/* The Content-Type for a file name by its extension (case-insensitive);
 * "application/octet-stream" when unknown. The result is static. */
const char *http_static_content_type(const char *name);

/* The file called rel (the path below the prefix, already percent-decoded;
 * "" means index.html) in files[0..n), or NULL. */
const struct http_static_file *http_static_find(const struct http_static_file *files, size_t n, const char *rel);

/* True if an If-None-Match header value (a list of entity tags, or "*")
 * names etag. Weak tags (W/"...") match by their opaque part, as RFC 9110
 * asks for If-None-Match. NULL never matches. */
bool http_static_etag_matches(const char *if_none_match, const char *etag);

/* Answers a GET or HEAD below prefix from files: rel is the path below the
 * prefix, or NULL for the prefix without its trailing slash (a 308 redirect
 * to prefix). Only from a request's first handling, as an answer. */
void http_static_answer(struct http_req *req, const char *prefix, const struct http_static_file *files, size_t n,
                        const char *rel);

#endif
