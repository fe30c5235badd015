/* libFuzzer driver: a homeserver /sync response as the poller reads it and
 * the accumulator parses it (rooms, state, timelines, events). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/jsonx.h"
#include "ingest/accumulate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *body = jsonx_loadb((const char *)data, size, 0, &err);
    if (json_is_object(body)) acc_parse_only(body);
    json_decref(body);
    return 0;
}
