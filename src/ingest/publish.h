#ifndef SYNCV3_INGEST_PUBLISH_H
#define SYNCV3_INGEST_PUBLISH_H

#include <libpq-fe.h>

#include "ingest/accumulate.h"
#include "upstream/poller.h"

struct cache;

/* After the transaction that stored res has committed (ar is what
 * accumulate.c made of it): reads from c what the caches need (rooms and
 * users they hold, invites, account data) and applies the changes to cache
 * in one cache_apply. 0 on success; -1 after logging a read failure, with
 * nothing applied (the response stays stored; connections catch up on their
 * next snapshot). Runs on the ingest thread. */
int ingest_publish(struct cache *cache, PGconn *c, struct poller_result *res, struct acc_result *ar);

#endif
