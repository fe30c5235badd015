/* Storing a response's to-device messages for the polling device, inside the
 * accumulator's transaction.
 *
 * Room-key requests that were withdrawn before the device fetched them are
 * not kept: an `m.room_key_request` with action "request_cancellation"
 * removes every still-undelivered "request" with the same sender,
 * requesting_device_id and request_id (earlier in the same batch, or stored
 * and never sent to a client: position above the device's highest delivered
 * position), and is itself dropped when it removed one. A cancellation whose
 * request was already delivered (or is unknown) is stored as usual, so a
 * client that saw a request always sees its cancellation. Without this a
 * device that stays offline collects every request of its user's other
 * devices and their cancellations, often hundreds of thousands. */
#ifndef SYNCV3_INGEST_TODEVICE_H
#define SYNCV3_INGEST_TODEVICE_H

#include <jansson.h>

#include "ingest/peruser.h"

/* Stores the to_device.events array (NULL or empty: nothing) for
 * (x->user_id, x->device_id), dropping cancelled room-key requests as above,
 * and sets x->out->n_to_device to the number stored. Returns 0, or -1 with
 * *x->err. */
int todevice_store(struct peruser *x, json_t *events);

#endif
