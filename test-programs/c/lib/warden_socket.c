/* The POSIX socket calls Debian's wasi-libc lacks, on Warden's preview1
 * socket extension (see warden_socket.h). */
#include "warden_socket.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int pool_fd = -1;

void warden_use_pool(int poolfd) { pool_fd = poolfd; }


int warden_pool(const char *name) {
    const char *pools = getenv("WARDEN_POOLS");
    size_t n = strlen(name);
    while (pools && *pools) {
        if (strncmp(pools, name, n) == 0 && pools[n] == '=')
            return atoi(pools + n + 1);
        pools = strchr(pools, ',');
        if (pools)
            pools++;
    }
    return -1;
}

static int fail(__wasi_errno_t e) {
    errno = e;
    return -1;
}

int warden_pool_narrow(int poolfd, const char *spec) {
    int32_t fd = -1;
    __wasi_errno_t e = warden_sock_pool_narrow(poolfd, spec, &fd);
    return e ? fail(e) : fd;
}

static int to_wasi(const struct sockaddr *sa, socklen_t len, warden_addr_t *out) {
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        const uint8_t *b = (const uint8_t *)&in->sin_addr.s_addr;
        out->kind = 0;
        out->addr.ip4.addr = (warden_ip4_t){b[0], b[1], b[2], b[3]};
        out->addr.ip4.port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        uint16_t s[8];
        for (int i = 0; i < 8; i++)
            s[i] = (uint16_t)(b[2 * i] << 8 | b[2 * i + 1]);
        out->kind = 1;
        out->addr.ip6.addr = (warden_ip6_t){s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]};
        out->addr.ip6.port = ntohs(in6->sin6_port);
        return 0;
    }
    return fail(EAFNOSUPPORT);
}

static socklen_t from_wasi(const warden_addr_t *a, struct sockaddr_storage *out) {
    memset(out, 0, sizeof *out);
    if (a->kind == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        uint8_t *b = (uint8_t *)&in->sin_addr.s_addr;
        in->sin_family = AF_INET;
        in->sin_port = htons(a->addr.ip4.port);
        b[0] = a->addr.ip4.addr.n0;
        b[1] = a->addr.ip4.addr.n1;
        b[2] = a->addr.ip4.addr.n2;
        b[3] = a->addr.ip4.addr.n3;
        return sizeof *in;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    const uint16_t *s = &a->addr.ip6.addr.n0;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(a->addr.ip6.port);
    for (int i = 0; i < 8; i++) {
        in6->sin6_addr.s6_addr[2 * i] = (uint8_t)(s[i] >> 8);
        in6->sin6_addr.s6_addr[2 * i + 1] = (uint8_t)s[i];
    }
    return sizeof *in6;
}

static void copy_out(const struct sockaddr_storage *ss, socklen_t n, struct sockaddr *addr,
                     socklen_t *len) {
    if (addr && len) {
        memcpy(addr, ss, n < *len ? n : *len);
        *len = n;
    }
}

int socket(int domain, int type, int protocol) {
    (void)protocol;
    int af = domain == AF_INET ? WARDEN_INET4 : domain == AF_INET6 ? WARDEN_INET6 : -1;
    if (af < 0)
        return fail(EAFNOSUPPORT);
    int st = (type & 0xf) == SOCK_STREAM  ? WARDEN_SOCK_STREAM
             : (type & 0xf) == SOCK_DGRAM ? WARDEN_SOCK_DGRAM
                                          : -2;
    if (st == -2)
        return fail(EINVAL);
    int32_t fd;
    __wasi_errno_t e = warden_sock_open(pool_fd, af, st, &fd);
    if (e)
        return fail(e);
    if (type & SOCK_NONBLOCK) {
        e = __wasi_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_NONBLOCK);
        if (e)
            return fail(e);
    }
    return fd;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    warden_addr_t a;
    if (to_wasi(addr, len, &a))
        return -1;
    __wasi_errno_t e = warden_sock_bind(fd, &a);
    return e ? fail(e) : 0;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    warden_addr_t a;
    if (to_wasi(addr, len, &a))
        return -1;
    __wasi_errno_t e = warden_sock_connect(fd, &a);
    return e ? fail(e) : 0;
}

int listen(int fd, int backlog) {
    __wasi_errno_t e = warden_sock_listen(fd, backlog);
    return e ? fail(e) : 0;
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len) {
    warden_addr_t a;
    __wasi_errno_t e = warden_sock_addr_local(fd, &a);
    if (e)
        return fail(e);
    struct sockaddr_storage ss;
    copy_out(&ss, from_wasi(&a, &ss), addr, len);
    return 0;
}

int getpeername(int fd, struct sockaddr *addr, socklen_t *len) {
    warden_addr_t a;
    __wasi_errno_t e = warden_sock_addr_remote(fd, &a);
    if (e)
        return fail(e);
    struct sockaddr_storage ss;
    copy_out(&ss, from_wasi(&a, &ss), addr, len);
    return 0;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
               socklen_t tolen) {
    (void)flags;
    warden_addr_t a;
    if (to_wasi(to, tolen, &a))
        return -1;
    __wasi_ciovec_t iov = {buf, len};
    uint32_t sent;
    __wasi_errno_t e = warden_sock_send_to(fd, &iov, 1, 0, &a, &sent);
    return e ? fail(e) : (ssize_t)sent;
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
                 socklen_t *fromlen) {
    __wasi_iovec_t iov = {buf, len};
    warden_addr_t a;
    uint32_t got;
    uint16_t ri = (flags & MSG_PEEK) ? __WASI_RIFLAGS_RECV_PEEK : 0;
    __wasi_errno_t e = warden_sock_recv_from(fd, &iov, 1, ri, &a, &got);
    if (e)
        return fail(e);
    struct sockaddr_storage ss;
    copy_out(&ss, from_wasi(&a, &ss), from, fromlen);
    return got;
}

int warden_setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
    if (len < sizeof(int))
        return fail(EINVAL);
    int v = *(const int *)value;
    __wasi_errno_t e;
    if (level == SOL_SOCKET && name == SO_REUSEADDR)
        e = warden_sock_set_reuse_addr(fd, v != 0);
    else if (level == SOL_SOCKET && name == SO_KEEPALIVE)
        e = warden_sock_set_keep_alive(fd, v != 0);
    else if (level == SOL_SOCKET && name == SO_RCVBUF)
        e = warden_sock_set_recv_buf_size(fd, (uint32_t)v);
    else if (level == IPPROTO_TCP && name == 1 /* TCP_NODELAY */)
        e = warden_sock_set_tcp_no_delay(fd, v != 0);
    else
        e = ENOPROTOOPT;
    return e ? fail(e) : 0;
}

int warden_resolve(const char *host, uint16_t port, struct sockaddr_storage *out, int max) {
    char service[8];
    int n = 0;
    for (uint16_t p = port, d = 10000; d; d /= 10)
        if (p / d || n || d == 1)
            service[n++] = (char)('0' + (p / d) % 10);
    service[n] = 0;
    warden_addr_info_t info[16];
    uint32_t total = 0;
    warden_addr_info_hints_t hints = {WARDEN_SOCK_STREAM, WARDEN_INET_UNSPEC, 1};
    __wasi_errno_t e = warden_sock_addr_resolve(host, service, &hints, info, 16, &total);
    if (e)
        return fail(e);
    for (int i = 0; i < max && i < (int)total && i < 16; i++)
        from_wasi(&info[i].addr, &out[i]);
    return (int)total;
}
