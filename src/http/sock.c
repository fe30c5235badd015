#include "http/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"

/* Creates a non-blocking, close-on-exec socket. */
static int new_socket(int family)
{
    return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* Binds and listens on one resolved address; returns the socket or -1. */
static int bind_one(const struct sockaddr *sa, socklen_t salen, bool dual_stack, int backlog)
{
    int fd = new_socket(sa->sa_family);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa->sa_family == AF_INET6) {
        int v6only = dual_stack ? 0 : 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (bind(fd, sa, salen) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int sock_listen_tcp(const char *host, int port, int backlog)
{
    if (port < 0 || port > 65535) {
        LOG_ERROR("http", "invalid port %d", port);
        return -1;
    }
    if (!host || !*host) {
        /* All interfaces: one dual-stack IPv6 socket, or IPv4 if the host has no IPv6. */
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                                  .sin6_addr = IN6ADDR_ANY_INIT};
        int fd = bind_one((struct sockaddr *)&a6, sizeof a6, true, backlog);
        if (fd >= 0) return fd;
        if (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL) {
            LOG_ERROR("http", "cannot listen on [::]:%d: %s", port, strerror(errno));
            return -1;
        }
        struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_ANY)};
        fd = bind_one((struct sockaddr *)&a4, sizeof a4, false, backlog);
        if (fd < 0) LOG_ERROR("http", "cannot listen on 0.0.0.0:%d: %s", port, strerror(errno));
        return fd;
    }
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        LOG_ERROR("http", "cannot resolve listen address %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = bind_one(ai->ai_addr, ai->ai_addrlen, false, backlog);
        if (fd < 0) err = errno;
    }
    freeaddrinfo(res);
    if (fd < 0) LOG_ERROR("http", "cannot listen on %s:%d: %s", host, port, strerror(err));
    return fd;
}

int sock_listen_unix(const char *path, unsigned mode, int backlog)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sun.sun_path) {
        LOG_ERROR("http", "unix socket path too long or empty (%zu bytes)", n);
        return -1;
    }
    memcpy(sun.sun_path, path, n + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            LOG_ERROR("http", "%s exists and is not a socket; not removing it", path);
            return -1;
        }
        if (unlink(path) < 0) {
            LOG_ERROR("http", "cannot remove old socket %s: %s", path, strerror(errno));
            return -1;
        }
    }
    int fd = new_socket(AF_UNIX);
    if (fd < 0) {
        LOG_ERROR("http", "socket(AF_UNIX): %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        LOG_ERROR("http", "cannot bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* chmod after bind: the socket file's mode decides who may connect. */
    if (chmod(path, (mode_t)mode) < 0 || listen(fd, backlog) < 0) {
        LOG_ERROR("http", "cannot set up %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

int sock_listen_addr(const char *addr, unsigned unix_mode, int backlog)
{
    if (!addr || !*addr) {
        LOG_ERROR("http", "empty listen address");
        return -1;
    }
    if (addr[0] == '/') return sock_listen_unix(addr, unix_mode, backlog);
    char *host = NULL;
    int port = 0;
    if (config_split_hostport(addr, &host, &port) < 0) {
        LOG_ERROR("http", "listen address must be host:port or a unix socket path: %s", addr);
        return -1;
    }
    int fd = sock_listen_tcp(host, port, backlog);
    free(host);
    return fd;
}

int sock_bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}
