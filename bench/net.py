#!/usr/bin/env python3
"""Preview1 networking benchmark: guests under Warden against the same
programs built natively, side by side in one run, on loopback.

- Echo throughput: one connection, the client writes SIZE bytes in 64 KiB
  writes while reading the echo back; MiB/s of payload (each way).
- Connection rate: one client, sequential short exchanges (connect, send a
  small request, read the whole reply, close); connections per second.

The programs are test-programs/src/bin/{echo_std,echo_tokio,http_mio}.rs.
Under Warden they get their listener with --listen; natively this script
binds it and hands it over as fd 3, the same layout. Every loop is bounded
and talks to 127.0.0.1 only.

Both servers of a pair run at once and the rounds alternate between them,
so drift on a busy machine hits both alike.

Usage: python3 bench/net.py [--size-mib N] [--conns N] [--runs N]
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
PROGRAMS = os.path.join(ROOT, "test-programs")
BINS = ["echo_std", "echo_tokio", "http_mio"]


def build():
    subprocess.run(["cargo", "build", "--release", "-p", "warden", "--quiet"], cwd=ROOT, check=True)
    bins = [a for b in BINS for a in ("--bin", b)]
    # From test-programs/ so its cargo config (tokio_unstable on wasip1) applies.
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "p1", "--target", "wasm32-wasip1",
                    "--target-dir", os.path.join(OUT, "guests"), *bins], cwd=PROGRAMS, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "p1",
                    "--target-dir", os.path.join(OUT, "native"), *bins], cwd=PROGRAMS, check=True)


class Server:
    """One server process, warden-hosted or native, on 127.0.0.1."""

    def __init__(self, kind, name, count):
        if kind == "warden":
            wasm = os.path.join(OUT, "guests", "wasm32-wasip1", "release", f"{name}.wasm")
            cache = os.path.join(OUT, "warden-cache")
            self.proc = subprocess.Popen(
                [os.path.join(ROOT, "target", "release", "warden"), "run", "--cache-dir", cache,
                 "--listen", "127.0.0.1:0", wasm, str(count)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = self.proc.stderr.readline().decode()
            self.port = int(line.rsplit(":", 1)[1])
        else:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1024)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            self.proc = subprocess.Popen(
                [os.path.join(OUT, "native", "release", name), str(count)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(fd,), preexec_fn=lambda: os.dup2(fd, 3))
            listener.close()

    def finish(self):
        out, err = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0:
            raise SystemExit(f"server failed ({self.proc.returncode}): {err.decode()}")
        return out.decode().strip()


def throughput(port, size):
    """Seconds to push `size` bytes through an echo server and get them back."""
    chunk = bytes(range(256)) * 256  # 64 KiB
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()

    def writer():
        sent = 0
        while sent < size:
            s.sendall(chunk)
            sent += len(chunk)
        s.shutdown(socket.SHUT_WR)

    w = threading.Thread(target=writer)
    w.start()
    got = 0
    while True:
        data = s.recv(1 << 20)
        if not data:
            break
        got += len(data)
    t = time.perf_counter() - t0
    w.join()
    s.close()
    if got != size:
        raise SystemExit(f"echo returned {got} of {size} bytes")
    return t


def conn_rate(port, conns, request):
    t0 = time.perf_counter()
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        s.close()
    return conns / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    build()
    size = args.size_mib << 20
    rows = []
    # Both servers run at once and the rounds alternate between them, so
    # drift on a busy machine hits both alike; medians over the rounds.
    for name in ("echo_std", "echo_tokio"):
        servers = {kind: Server(kind, name, args.runs) for kind in ("native", "warden")}
        times = {kind: [] for kind in servers}
        for _ in range(args.runs):
            for kind, server in servers.items():
                times[kind].append(throughput(server.port, size))
        for server in servers.values():
            server.finish()
        rows.append((f"{name} throughput (MiB/s)",
                     *(args.size_mib / statistics.median(times[k]) for k in ("native", "warden"))))
    requests = {"echo_std": b"x" * 64, "http_mio": b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"}
    batch = max(1, args.conns // args.runs)
    for name, request in requests.items():
        servers = {kind: Server(kind, name, batch * args.runs) for kind in ("native", "warden")}
        rates = {kind: [] for kind in servers}
        for _ in range(args.runs):
            for kind, server in servers.items():
                rates[kind].append(conn_rate(server.port, batch, request))
        for server in servers.values():
            server.finish()
        rows.append((f"{name} connections/s", *(statistics.median(rates[k]) for k in ("native", "warden"))))
    print(f"payload {args.size_mib} MiB, {args.runs} alternating rounds (median); "
          f"{batch * args.runs} sequential connections in {args.runs} alternating batches (median)")
    print(f"{'measure':<34}{'native':>12}{'warden':>12}{'warden/native':>15}")
    for label, native, warden in rows:
        print(f"{label:<34}{native:>12.1f}{warden:>12.1f}{warden / native:>15.2f}")


if __name__ == "__main__":
    main()
