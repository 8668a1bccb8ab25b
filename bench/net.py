#!/usr/bin/env python3
"""Preview1 networking benchmark: guests under Warden against the same
programs built natively, side by side in one run, on loopback.

- Echo throughput: one connection, the client writes SIZE bytes in 64 KiB
  writes while reading the echo back; MiB/s of payload (each way).
- Connection rate: one client, sequential short exchanges (connect, send a
  small request, read the whole reply, close); connections per second.

Incoming, the servers are the guests: test-programs/src/bin/{echo_std,
echo_tokio,http_mio}.rs. Under Warden they get their listener with --listen;
natively this script binds it and hands it over as fd 3, the same layout.

Outgoing, the client is the guest: test-programs/src/bin/p1_client.rs
connects out through Warden's preview1 socket extension (sock_open,
sock_connect) under --allow-connect, and natively through std, to one
native echo_std; it times its own work, so start-up is not counted.

Every loop is bounded and talks to 127.0.0.1 only.

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
BINS = ["echo_std", "echo_tokio", "http_mio", "p1_client"]
WARDEN = os.path.join(ROOT, "target", "release", "warden")
CACHE = os.path.join(OUT, "warden-cache")


def guest(name):
    return os.path.join(OUT, "guests", "wasm32-wasip1", "release", f"{name}.wasm")


def native(name):
    return os.path.join(OUT, "native", "release", name)


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
            self.proc = subprocess.Popen(
                [WARDEN, "run", "--cache-dir", CACHE, "--listen", "127.0.0.1:0", guest(name), str(count)],
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
                [native(name), str(count)],
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


def client(kind, port, mode, n):
    """Run p1_client once (under Warden or native); the seconds it reports."""
    addr = f"127.0.0.1:{port}"
    if kind == "warden":
        cmd = [WARDEN, "run", "--cache-dir", CACHE, "--allow-connect", addr, guest("p1_client"), mode, addr, str(n)]
    else:
        cmd = [native("p1_client"), mode, addr, str(n)]
    done = subprocess.run(cmd, capture_output=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{kind} p1_client {mode} failed ({done.returncode}): {done.stderr.decode()}")
    return float(done.stdout)


def outgoing(size_mib, runs, batch):
    """Rows for the client direction: one native echo server, the client
    under Warden and native in alternating rounds."""
    kinds = ("native", "warden")
    # Per kind: one warm-up (compiles into the cache), then per round one
    # echo connection and a batch of short ones.
    server = Server("native", "echo_std", len(kinds) * (1 + runs * (1 + batch)))
    for kind in kinds:
        client(kind, server.port, "conns", 1)
    times = {kind: [] for kind in kinds}
    rates = {kind: [] for kind in kinds}
    for _ in range(runs):
        for kind in kinds:
            times[kind].append(client(kind, server.port, "echo", size_mib << 20))
            rates[kind].append(batch / client(kind, server.port, "conns", batch))
    server.finish()
    return [("p1_client echo out (MiB/s)", *(size_mib / statistics.median(times[k]) for k in kinds)),
            ("p1_client connections out/s", *(statistics.median(rates[k]) for k in kinds))]


def incoming(args, size, batch):
    """Rows for the server direction: each guest server under Warden and
    native at once, the rounds alternating between them."""
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
    for name, request in requests.items():
        servers = {kind: Server(kind, name, batch * args.runs) for kind in ("native", "warden")}
        rates = {kind: [] for kind in servers}
        for _ in range(args.runs):
            for kind, server in servers.items():
                rates[kind].append(conn_rate(server.port, batch, request))
        for server in servers.values():
            server.finish()
        rows.append((f"{name} connections/s", *(statistics.median(rates[k]) for k in ("native", "warden"))))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--out-conns", type=int, default=10000,
                    help="connections the outgoing client makes in all (more than --conns: "
                         "each batch is short, and short batches are noisy)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--direction", choices=("both", "in", "out"), default="both",
                    help="guests as servers (in), as clients (out), or both")
    args = ap.parse_args()
    build()
    size = args.size_mib << 20
    batch = max(1, args.conns // args.runs)
    rows = []
    if args.direction != "out":
        rows.extend(incoming(args, size, batch))
    if args.direction != "in":
        rows.extend(outgoing(args.size_mib, args.runs, max(1, args.out_conns // args.runs)))
    print(f"payload {args.size_mib} MiB, {args.runs} alternating rounds (median); "
          f"{batch * args.runs} sequential connections in {args.runs} alternating batches (median); "
          f"outgoing: {args.out_conns} connections")
    print(f"{'measure':<34}{'native':>12}{'warden':>12}{'warden/native':>15}")
    for label, native_value, warden_value in rows:
        print(f"{label:<34}{native_value:>12.1f}{warden_value:>12.1f}{warden_value / native_value:>15.2f}")


if __name__ == "__main__":
    main()
