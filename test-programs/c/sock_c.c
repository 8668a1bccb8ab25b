/* A C program using Warden's preview1 socket extension through POSIX calls
 * (lib/warden_socket.h): TCP and UDP clients and servers, name
 * resolution, non-blocking connect with poll, socket options. Each mode
 * prints one result line, or `error: CALL: ERRNO` and exits 1.
 * Usage: sock_c MODE ARGS... [--pool NAME [--narrow SPEC]]
 *   tcp IP PORT         connect, send "hello", print the reply line
 *   name HOST PORT      resolve HOST, connect to its first address, as tcp
 *   udp IP PORT         send "ping", print the answer and its sender
 *   nb IP PORT          non-blocking connect, poll until writable, as tcp
 *   server IP PORT N    listen, accept N connections, echo a line to each
 *   udpserver IP PORT   answer one datagram with "pong"
 *   opts                set and read back socket options */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "warden_socket.h"

static const char *errname(int e) {
    switch (e) {
    case EACCES: return "EACCES";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EINPROGRESS: return "EINPROGRESS";
    case EMLINK: return "EMLINK";
    case ENOTSOCK: return "ENOTSOCK";
    case EAGAIN: return "EAGAIN";
    case ENOENT: return "ENOENT";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case ENOTCONN: return "ENOTCONN";
    default: return "other";
    }
}

static int die(const char *what) {
    int e = errno;
    printf("error: %s: %s (%d)\n", what, errname(e), e);
    return 1;
}

static socklen_t addr_of(const char *ip, int port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        return sizeof *in;
    }
    if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return sizeof *in6;
    }
    fprintf(stderr, "not an address: %s\n", ip);
    exit(2);
}

static void show(const struct sockaddr_storage *ss, char *out, size_t n) {
    char ip[64];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, n, "%s:%d", ip, ntohs(in->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, n, "[%s]:%d", ip, ntohs(in6->sin6_port));
    }
}

static int exchange(int fd) {
    const char *msg = "hello\n";
    if (send(fd, msg, strlen(msg), 0) < 0)
        return die("send");
    char buf[256];
    size_t have = 0;
    while (have < sizeof buf - 1) {
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n < 0)
            return die("recv");
        if (n == 0)
            break;
        have += (size_t)n;
        if (memchr(buf, '\n', have))
            break;
    }
    buf[have] = 0;
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    printf("got: %s\n", buf);
    close(fd);
    return 0;
}

static int tcp(struct sockaddr_storage *ss, socklen_t len) {
    int fd = socket(ss->ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return die("socket");
    if (connect(fd, (struct sockaddr *)ss, len) < 0)
        return die("connect");
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
        return die("getpeername");
    return exchange(fd);
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--pool") == 0) {
            int pool = warden_pool(argv[i + 1]);
            if (pool < 0) {
                printf("error: no pool %s in WARDEN_POOLS\n", argv[i + 1]);
                return 1;
            }
            /* --pool NAME --narrow SPEC: open from a narrowed copy. */
            if (i + 3 < argc && strcmp(argv[i + 2], "--narrow") == 0) {
                pool = warden_pool_narrow(pool, argv[i + 3]);
                if (pool < 0)
                    return die("narrow");
            }
            warden_use_pool(pool);
            argc = i;
            break;
        }
    }
    if (argc < 2) {
        fprintf(stderr, "usage: sock_c MODE ARGS... [--pool NAME]\n");
        return 2;
    }
    const char *mode = argv[1];
    struct sockaddr_storage ss;
    if (strcmp(mode, "tcp") == 0 && argc == 4) {
        socklen_t len = addr_of(argv[2], atoi(argv[3]), &ss);
        return tcp(&ss, len);
    }
    if (strcmp(mode, "name") == 0 && argc == 4) {
        struct sockaddr_storage found[4];
        int n = warden_resolve(argv[2], (uint16_t)atoi(argv[3]), found, 4);
        if (n < 0)
            return die("resolve");
        if (n == 0) {
            printf("error: resolve: no addresses\n");
            return 1;
        }
        char shown[80];
        show(&found[0], shown, sizeof shown);
        printf("resolved %d, first %s\n", n, shown);
        socklen_t len = found[0].ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                      : sizeof(struct sockaddr_in6);
        return tcp(&found[0], len);
    }
    if (strcmp(mode, "udp") == 0 && argc == 4) {
        socklen_t len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
        if (fd < 0)
            return die("socket");
        if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&ss, len) < 0)
            return die("sendto");
        char buf[64];
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return die("recvfrom");
        buf[n] = 0;
        char shown[80];
        show(&from, shown, sizeof shown);
        printf("udp got %s from %s\n", buf, shown);
        return 0;
    }
    if (strcmp(mode, "nb") == 0 && argc == 4) {
        socklen_t len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return die("socket");
        if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
            printf("connected at once\n");
        } else if (errno != EINPROGRESS) {
            return die("connect");
        } else {
            printf("connect: EINPROGRESS\n");
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 10000) != 1)
                return die("poll");
            printf("writable\n");
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
            return die("getpeername");
        /* Back to blocking for the exchange. */
        if (__wasi_fd_fdstat_set_flags(fd, 0) != 0)
            return die("fdstat_set_flags");
        return exchange(fd);
    }
    if (strcmp(mode, "server") == 0 && argc == 5) {
        socklen_t len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_STREAM, 0);
        if (fd < 0)
            return die("socket");
        int one = 1;
        if (warden_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            return die("setsockopt");
        if (bind(fd, (struct sockaddr *)&ss, len) < 0)
            return die("bind");
        if (listen(fd, 16) < 0)
            return die("listen");
        struct sockaddr_storage local;
        socklen_t llen = sizeof local;
        if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0)
            return die("getsockname");
        char shown[80];
        show(&local, shown, sizeof shown);
        printf("listening on %s\n", shown);
        fflush(stdout);
        for (int i = 0, n = atoi(argv[4]); i < n; i++) {
            int c = accept(fd, NULL, NULL);
            if (c < 0)
                return die("accept");
            char buf[256];
            ssize_t got = recv(c, buf, sizeof buf, 0);
            if (got < 0)
                return die("recv");
            send(c, "echo: ", 6, 0);
            send(c, buf, (size_t)got, 0);
            close(c);
        }
        printf("served %s\n", argv[4]);
        return 0;
    }
    if (strcmp(mode, "udpserver") == 0 && argc == 4) {
        socklen_t len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
        if (fd < 0)
            return die("socket");
        if (bind(fd, (struct sockaddr *)&ss, len) < 0)
            return die("bind");
        printf("bound\n");
        fflush(stdout);
        char buf[64];
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return die("recvfrom");
        if (sendto(fd, "pong", 4, 0, (struct sockaddr *)&from, flen) < 0)
            return die("sendto");
        printf("answered\n");
        return 0;
    }
    if (strcmp(mode, "opts") == 0) {
        int fd = socket(AF_INET6, SOCK_STREAM, 0);
        if (fd < 0)
            return die("socket");
        bool on = false;
        uint32_t size = 0;
        uint64_t us = 0;
        int32_t secs = 0;
        uint8_t ttl = 0;
        if (warden_sock_set_tcp_no_delay(fd, true) || warden_sock_get_tcp_no_delay(fd, &on))
            return die("tcp_no_delay");
        printf("tcp_no_delay %d\n", on);
        if (warden_sock_set_keep_alive(fd, true) || warden_sock_get_keep_alive(fd, &on))
            return die("keep_alive");
        printf("keep_alive %d\n", on);
        if (warden_sock_set_recv_buf_size(fd, 65536) || warden_sock_get_recv_buf_size(fd, &size))
            return die("recv_buf_size");
        printf("recv_buf_size at least 65536: %d\n", size >= 65536);
        if (warden_sock_set_recv_timeout(fd, 1500000) || warden_sock_get_recv_timeout(fd, &us))
            return die("recv_timeout");
        printf("recv_timeout %llu\n", (unsigned long long)us);
        if (warden_sock_set_linger(fd, true, 7) || warden_sock_get_linger(fd, &on, &secs))
            return die("linger");
        printf("linger %d %d\n", on, secs);
        if (warden_sock_set_ip_ttl(fd, 42) || warden_sock_get_ip_ttl(fd, &ttl))
            return die("ip_ttl");
        printf("ip_ttl %d\n", ttl);
        if (warden_sock_set_ipv6_only(fd, true) || warden_sock_get_ipv6_only(fd, &on))
            return die("ipv6_only");
        printf("ipv6_only %d\n", on);
        int v4 = socket(AF_INET, SOCK_STREAM, 0);
        __wasi_errno_t e = warden_sock_set_ipv6_only(v4, true);
        printf("ipv6_only on IPv4: %s\n", errname(e));
        int bad = 1;
        errno = 0;
        warden_setsockopt(fd, SOL_SOCKET, 12345, &bad, sizeof bad);
        printf("unknown option: %s\n", errname(errno));
        return 0;
    }
    fprintf(stderr, "unknown mode or wrong arguments: %s\n", mode);
    return 2;
}
