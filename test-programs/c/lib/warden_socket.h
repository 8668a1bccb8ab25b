/* Warden's preview1 socket extension for C programs: the raw ABI (WAMR's
 * lib-socket import names and layouts, byte for byte), and the POSIX calls
 * Debian's wasi-libc lacks (socket, bind, connect, listen, getsockname,
 * getpeername, sendto, recvfrom, setsockopt/getsockopt for common options)
 * on top of it, in warden_socket.c.
 *
 * Address pools: WARDEN_POOLS=NAME=FD,... names the pools the operator
 * pre-opened; warden_pool("db") finds one. socket() opens from the pool
 * set with warden_use_pool() (default -1: the instance's policy alone). */
#ifndef WARDEN_SOCKET_H
#define WARDEN_SOCKET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <wasi/api.h>

/* __wasi_addr_t: kind (0 IPv4, 1 IPv6), then the union at offset 4;
 * ports and IPv6 segments in host (little-endian) order. 24 bytes. */
typedef struct {
    uint8_t n0, n1, n2, n3;
} warden_ip4_t;
typedef struct {
    warden_ip4_t addr;
    uint16_t port;
} warden_ip4_port_t;
typedef struct {
    uint16_t n0, n1, n2, n3, h0, h1, h2, h3;
} warden_ip6_t;
typedef struct {
    warden_ip6_t addr;
    uint16_t port;
} warden_ip6_port_t;
typedef struct {
    int32_t kind;
    union {
        warden_ip4_port_t ip4;
        warden_ip6_port_t ip6;
    } addr;
} warden_addr_t;
typedef struct {
    int32_t kind;
    union {
        warden_ip4_t ip4;
        warden_ip6_t ip6;
    } addr;
} warden_addr_ip_t;
typedef struct {
    warden_addr_t addr;
    int32_t type;
} warden_addr_info_t;
typedef struct {
    int32_t type;
    int32_t family;
    uint8_t hints_enabled;
} warden_addr_info_hints_t;

_Static_assert(sizeof(warden_addr_t) == 24, "__wasi_addr_t is 24 bytes");
_Static_assert(sizeof(warden_addr_ip_t) == 20, "__wasi_addr_ip_t is 20 bytes");
_Static_assert(sizeof(warden_addr_info_t) == 28, "__wasi_addr_info_t is 28 bytes");
_Static_assert(sizeof(warden_addr_info_hints_t) == 12, "hints are 12 bytes");

/* Option names wasi-libc does not define (Linux's values). */
#ifndef SO_REUSEADDR
#define SO_REUSEADDR 2
#endif
#ifndef SO_KEEPALIVE
#define SO_KEEPALIVE 9
#endif
#ifndef SO_RCVBUF
#define SO_RCVBUF 8
#endif

enum { WARDEN_INET4 = 0, WARDEN_INET6 = 1, WARDEN_INET_UNSPEC = 2 };
enum { WARDEN_SOCK_ANY = -1, WARDEN_SOCK_DGRAM = 0, WARDEN_SOCK_STREAM = 1 };

#define WARDEN_IMPORT(name) \
    __attribute__((import_module("wasi_snapshot_preview1"), import_name(name)))

WARDEN_IMPORT("sock_open")
__wasi_errno_t warden_sock_open(int32_t poolfd, int32_t af, int32_t socktype, int32_t *fd);
WARDEN_IMPORT("sock_bind")
__wasi_errno_t warden_sock_bind(int32_t fd, const warden_addr_t *addr);
WARDEN_IMPORT("sock_connect")
__wasi_errno_t warden_sock_connect(int32_t fd, const warden_addr_t *addr);
WARDEN_IMPORT("sock_listen")
__wasi_errno_t warden_sock_listen(int32_t fd, int32_t backlog);
WARDEN_IMPORT("sock_addr_local")
__wasi_errno_t warden_sock_addr_local(int32_t fd, warden_addr_t *addr);
WARDEN_IMPORT("sock_addr_remote")
__wasi_errno_t warden_sock_addr_remote(int32_t fd, warden_addr_t *addr);
WARDEN_IMPORT("sock_addr_resolve")
__wasi_errno_t warden_sock_addr_resolve(const char *host, const char *service,
                                        const warden_addr_info_hints_t *hints,
                                        warden_addr_info_t *info, uint32_t info_len,
                                        uint32_t *total);
WARDEN_IMPORT("sock_send_to")
__wasi_errno_t warden_sock_send_to(int32_t fd, const __wasi_ciovec_t *iovs, uint32_t iovs_len,
                                   uint16_t flags, const warden_addr_t *to, uint32_t *sent);
WARDEN_IMPORT("sock_recv_from")
__wasi_errno_t warden_sock_recv_from(int32_t fd, const __wasi_iovec_t *iovs, uint32_t iovs_len,
                                     uint16_t flags, warden_addr_t *from, uint32_t *got);
WARDEN_IMPORT("sock_close")
__wasi_errno_t warden_sock_close(int32_t fd);
WARDEN_IMPORT("sock_set_reuse_addr")
__wasi_errno_t warden_sock_set_reuse_addr(int32_t fd, bool on);
WARDEN_IMPORT("sock_get_reuse_addr")
__wasi_errno_t warden_sock_get_reuse_addr(int32_t fd, bool *on);
WARDEN_IMPORT("sock_set_keep_alive")
__wasi_errno_t warden_sock_set_keep_alive(int32_t fd, bool on);
WARDEN_IMPORT("sock_get_keep_alive")
__wasi_errno_t warden_sock_get_keep_alive(int32_t fd, bool *on);
WARDEN_IMPORT("sock_set_tcp_no_delay")
__wasi_errno_t warden_sock_set_tcp_no_delay(int32_t fd, bool on);
WARDEN_IMPORT("sock_get_tcp_no_delay")
__wasi_errno_t warden_sock_get_tcp_no_delay(int32_t fd, bool *on);
WARDEN_IMPORT("sock_set_recv_buf_size")
__wasi_errno_t warden_sock_set_recv_buf_size(int32_t fd, uint32_t size);
WARDEN_IMPORT("sock_get_recv_buf_size")
__wasi_errno_t warden_sock_get_recv_buf_size(int32_t fd, uint32_t *size);
WARDEN_IMPORT("sock_set_recv_timeout")
__wasi_errno_t warden_sock_set_recv_timeout(int32_t fd, uint64_t us);
WARDEN_IMPORT("sock_get_recv_timeout")
__wasi_errno_t warden_sock_get_recv_timeout(int32_t fd, uint64_t *us);
WARDEN_IMPORT("sock_set_linger")
__wasi_errno_t warden_sock_set_linger(int32_t fd, bool on, int32_t secs);
WARDEN_IMPORT("sock_get_linger")
__wasi_errno_t warden_sock_get_linger(int32_t fd, bool *on, int32_t *secs);
WARDEN_IMPORT("sock_set_ip_ttl")
__wasi_errno_t warden_sock_set_ip_ttl(int32_t fd, uint8_t ttl);
WARDEN_IMPORT("sock_get_ip_ttl")
__wasi_errno_t warden_sock_get_ip_ttl(int32_t fd, uint8_t *ttl);
WARDEN_IMPORT("sock_set_ipv6_only")
__wasi_errno_t warden_sock_set_ipv6_only(int32_t fd, bool on);
WARDEN_IMPORT("sock_get_ipv6_only")
__wasi_errno_t warden_sock_get_ipv6_only(int32_t fd, bool *on);

/* The POSIX face. Errors set errno and return -1. */
int socket(int domain, int type, int protocol);
int bind(int fd, const struct sockaddr *addr, socklen_t len);
int connect(int fd, const struct sockaddr *addr, socklen_t len);
int listen(int fd, int backlog);
int getsockname(int fd, struct sockaddr *addr, socklen_t *len);
int getpeername(int fd, struct sockaddr *addr, socklen_t *len);
ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
               socklen_t tolen);
ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
                 socklen_t *fromlen);
int warden_setsockopt(int fd, int level, int name, const void *value, socklen_t len);
/* Resolve HOST to up to MAX IPv4/IPv6 addresses with PORT; returns how
 * many the name has in total (may exceed MAX), or -1 with errno. */
int warden_resolve(const char *host, uint16_t port, struct sockaddr_storage *out, int max);
/* The pool named NAME in WARDEN_POOLS, or -1. */
int warden_pool(const char *name);
/* Open sockets from POOLFD (-1: none) from now on. */
void warden_use_pool(int poolfd);

/* Warden's own call (no WAMR equivalent): a new pool descriptor for SPEC
 * ("NAME=RIGHTS@TARGETS", as --pool takes it) confined to POOLFD too, so it
 * never allows more than POOLFD; for handing a part of a pool to another
 * part of the program. */
__attribute__((import_module("warden"), import_name("sock_pool_narrow")))
__wasi_errno_t warden_sock_pool_narrow(int32_t poolfd, const char *spec, int32_t *newfd);
/* The same, returning the new descriptor, or -1 with errno. */
int warden_pool_narrow(int poolfd, const char *spec);

#endif
