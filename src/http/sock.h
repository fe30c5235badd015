/* Listening sockets for the HTTP daemons: TCP (IPv4/IPv6) and unix domain.
 *
 * We create listening sockets ourselves (rather than letting libmicrohttpd
 * bind) so that unix sockets get their file mode, an empty host means
 * dual-stack "all interfaces", and callers can learn the port chosen for
 * port 0. Every socket returned is non-blocking and close-on-exec. */
#ifndef SYNCV3_HTTP_SOCK_H
#define SYNCV3_HTTP_SOCK_H

/* Binds and listens on host:port. host NULL or "" = every interface (IPv6
 * dual-stack, falling back to IPv4 when IPv6 is unavailable); "0.0.0.0" =
 * every IPv4 interface; otherwise a literal address or a resolvable name
 * (the first address that binds wins). port 0 = let the kernel choose.
 * Returns the socket (the caller closes it) or -1 with a log line. */
int sock_listen_tcp(const char *host, int port, int backlog);

/* Binds and listens on the unix socket path, removing an existing socket
 * file there first (a non-socket file is left alone and is an error), then
 * chmod(path, mode). Returns the socket (the caller closes it and unlinks
 * path) or -1 with a log line. */
int sock_listen_unix(const char *path, unsigned mode, int backlog);

/* Binds according to addr: an absolute path (leading '/') is a unix socket
 * (given mode), anything else "host:port" as config_split_hostport reads it.
 * Returns the socket or -1. */
int sock_listen_addr(const char *addr, unsigned unix_mode, int backlog);

/* The local TCP port fd is bound to, or -1 (unix sockets, errors). */
int sock_bound_port(int fd);

#endif
