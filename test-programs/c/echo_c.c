/* A C echo server on the listener the runtime pre-opened at fd 3, built
 * with clang and Debian's wasi-libc (which has accept, recv and send but
 * no socket or bind). Blocking I/O; serves CONNECTIONS connections in turn.
 * Usage: echo_c CONNECTIONS */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: echo_c CONNECTIONS\n");
        return 2;
    }
    int connections = atoi(argv[1]);
    static char buf[65536];
    unsigned long long echoed = 0;
    for (int i = 0; i < connections; i++) {
        int conn = accept(3, NULL, NULL);
        if (conn < 0) {
            fprintf(stderr, "accept: %s\n", strerror(errno));
            return 1;
        }
        for (;;) {
            ssize_t n = recv(conn, buf, sizeof buf, 0);
            if (n == 0)
                break;
            if (n < 0) {
                fprintf(stderr, "connection %d: recv: %s\n", i, strerror(errno));
                break;
            }
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = send(conn, buf + off, n - off, 0);
                if (w < 0) {
                    fprintf(stderr, "connection %d: send: %s\n", i, strerror(errno));
                    break;
                }
                off += w;
            }
            echoed += n;
        }
        close(conn);
    }
    printf("c served %d connections, echoed %llu bytes\n", connections, echoed);
    return 0;
}
