/* JSON parsing that tolerates what jansson rejects but real servers send. */
#ifndef SYNCV3_BASE_JSONX_H
#define SYNCV3_BASE_JSONX_H

#include <jansson.h>
#include <stddef.h>

/* Like json_loadb(buf, len, flags, err), except that integers too large for
 * a 64-bit integer (which jansson refuses, failing the whole document) are
 * read as reals. One unusual number in one event must not make a homeserver
 * response unreadable forever. */
json_t *jsonx_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);

#endif
