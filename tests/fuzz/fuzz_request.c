/* libFuzzer driver: the sliding sync request parser, the sticky merge and the
 * canonical body used for retransmit detection. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "sync/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sync_req req, muxed;
    struct sync_req_error err;
    sync_req_init(&muxed);
    if (sync_req_parse(&req, (const char *)data, size, &err) == 0) {
        struct sync_req_changes ch;
        sync_req_changes_init(&ch);
        sync_req_merge(&muxed, &req, &ch);
        sync_req_merge(&muxed, &req, &ch); /* the same request again: no crash, no leak */
        sync_req_changes_release(&ch);
        sync_req_release(&req);
    }
    free(sync_req_canonical_body((const char *)data, size));
    sync_req_release(&muxed);
    return 0;
}
