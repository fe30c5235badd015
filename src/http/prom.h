/* A second, small HTTP listener for Prometheus (SYNCV3_PROM): GET /metrics
 * answers with whatever the render callback writes, as text format 0.0.4.
 * One internal libmicrohttpd thread; nothing else is served (404). */
#ifndef SYNCV3_HTTP_PROM_H
#define SYNCV3_HTTP_PROM_H

#include "base/buf.h"

struct prom_server;

/* Appends the exposition text to out; returns 0, or negative for a 500.
 * Called on the listener's thread. obs/metrics.h's metrics_render_cb fits. */
typedef int (*prom_render_fn)(void *ud, struct buf *out);

/* Listens on addr ("host:port", ":port", or an absolute unix socket path)
 * and serves /metrics with render(ud, ...). ud must outlive the server.
 * On success *out is set and 0 returned; else negative (logged), *out NULL. */
int prom_server_start(struct prom_server **out, const char *addr, prom_render_fn render, void *ud);
/* The bound TCP port, or -1 for a unix socket. */
int prom_server_port(const struct prom_server *p);
/* Stops the listener and frees p; NULL is a no-op. */
void prom_server_stop(struct prom_server *p);

#endif
