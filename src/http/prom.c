#include "http/prom.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "http/sock.h"

#define PROM_MAX_BODY ((size_t)64 << 20)

struct prom_server {
    struct MHD_Daemon *d;  /* the daemon */
    int listen_fd;         /* our listening socket, closed after the daemon stops */
    char *unix_path;       /* unix socket file to unlink at stop, or NULL */
    int port;              /* bound TCP port or -1 */
    prom_render_fn render; /* produces the exposition text */
    void *ud;              /* render's argument */
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    CHECK(r != NULL);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    struct prom_server *p = cls;
    if (*upload_data_size) {
        *upload_data_size = 0; /* ignore any body */
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") != 0) return reply(conn, 404, "text/plain; charset=utf-8", xstrdup("404 page not found\n"), 19);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, 405, "text/plain; charset=utf-8", xstrdup("method not allowed\n"), 19);
    struct buf b;
    buf_init(&b, PROM_MAX_BODY);
    if (p->render(p->ud, &b) < 0) {
        buf_release(&b);
        return reply(conn, 500, "text/plain; charset=utf-8", xstrdup("cannot render metrics\n"), 22);
    }
    size_t len;
    char *body = buf_detach(&b, &len);
    return reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}

int prom_server_start(struct prom_server **out, const char *addr, prom_render_fn render, void *ud)
{
    int rc = -1;
    *out = NULL;
    struct prom_server *p = xcalloc(1, sizeof *p);
    p->render = render;
    p->ud = ud;
    p->port = -1;
    p->listen_fd = sock_listen_addr(addr, 0666, 64);
    if (p->listen_fd < 0) goto out;
    if (addr[0] == '/')
        p->unix_path = xstrdup(addr);
    else
        p->port = sock_bound_port(p->listen_fd);
    p->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_access, p,
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)p->listen_fd, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)60, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (!p->d) {
        LOG_ERROR("http", "cannot start the metrics listener on %s", addr);
        goto out;
    }
    LOG_INFO("http", "serving metrics on %s/metrics", addr);
    *out = p;
    rc = 0;
out:
    if (rc < 0) {
        if (p->listen_fd >= 0) close(p->listen_fd);
        if (p->unix_path) unlink(p->unix_path);
        free(p->unix_path);
        free(p);
    }
    return rc;
}

int prom_server_port(const struct prom_server *p) { return p->port; }

void prom_server_stop(struct prom_server *p)
{
    if (!p) return;
    MHD_stop_daemon(p->d);
    close(p->listen_fd);
    if (p->unix_path) unlink(p->unix_path);
    free(p->unix_path);
    free(p);
}
