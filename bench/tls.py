#!/usr/bin/env python3
"""TLS benchmark: Warden doing TLS for a guest against the same program
native behind a native rustls terminator (or originator), side by side in
one run, on loopback.

Incoming (--listen-tls): the echo_std guest behind Warden's TLS, against
native echo_std behind `tlsbench terminate` (rustls, tokio). A rustls
client (`tlsbench echo-client`) measures bulk echo throughput (MiB/s of
payload each way, 64 KiB writes) and `tlsbench handshake-client` measures
full handshakes per second (connect, handshake, one ping, close_notify).

Outgoing (--connect-tls): the bench_client guest speaking plaintext
through Warden's TLS to a rustls server (`tlsbench serve`), against
native bench_client speaking plaintext through `tlsbench originate`: bulk
download and upload (MiB/s) and handshakes per second (a new TLS
connection per ping). The clients time themselves.

The native and Warden sides alternate round by round, so drift on a busy
machine hits both alike; medians are printed with warden/native ratios.
Everything listens on and talks to 127.0.0.1 only; every server stops when
this script closes its stdin (or after an hour).

Usage: python3 bench/tls.py [--size-mib N] [--handshakes N] [--runs N]
"""

import argparse
import os
import socket
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
PROGRAMS = os.path.join(ROOT, "test-programs")
TLS = os.path.join(OUT, "tls")
WARDEN = os.path.join(ROOT, "target", "release", "warden")
TLSBENCH = os.path.join(ROOT, "target", "release", "examples", "tlsbench")
CACHE = os.path.join(OUT, "warden-cache")


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "warden"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "warden-net", "--example", "tlsbench"],
                   cwd=ROOT, check=True)
    # From test-programs/ so its cargo config applies.
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "p1", "--target", "wasm32-wasip1",
                    "--target-dir", os.path.join(OUT, "guests"), "--bin", "echo_std"], cwd=PROGRAMS, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip2",
                    "--target-dir", os.path.join(OUT, "guests"), "--bin", "bench_client"], cwd=PROGRAMS, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "p1",
                    "--target-dir", os.path.join(OUT, "native"), "--bin", "echo_std", "--bin", "bench_client"],
                   cwd=PROGRAMS, check=True)
    os.makedirs(TLS, exist_ok=True)
    subprocess.run([TLSBENCH, "certs", TLS], check=True)


def guest(target, name):
    return os.path.join(OUT, "guests", target, "release", f"{name}.wasm")


def native(name):
    return os.path.join(OUT, "native", "release", name)


def port_of(line):
    """The port in `... listening on 127.0.0.1:PORT ...`."""
    addr = line.split("listening on ", 1)[1].split()[0]
    return int(addr.rsplit(":", 1)[1])


class Proc:
    """A server process that says where it listens on its first line."""

    def __init__(self, argv, first_on_stderr=False, **kw):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, **kw)
        stream = self.proc.stderr if first_on_stderr else self.proc.stdout
        self.port = port_of(stream.readline().decode())

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def native_echo(count):
    """Native echo_std on a listener handed over as fd 3, as Warden does."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    proc = subprocess.Popen([native("echo_std"), str(count)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=(fd,), preexec_fn=lambda: os.dup2(fd, 3))
    listener.close()
    return proc, port


def timed(argv):
    out = subprocess.run(argv, check=True, capture_output=True, timeout=600)
    return float(out.stdout.decode().strip().splitlines()[-1])


def incoming(size, handshakes, runs):
    ca, cert, key = (os.path.join(TLS, f) for f in ("ca.pem", "server.pem", "server.key"))
    # Each round: one echo connection, then one per handshake.
    count = runs * (1 + handshakes)
    warden = Proc([WARDEN, "run", "--cache-dir", CACHE, "--listen-tls", "127.0.0.1:0", "--tls-cert", cert,
                   "--tls-key", key, guest("wasm32-wasip1", "echo_std"), str(count)],
                  first_on_stderr=True)
    echo, echo_port = native_echo(count)
    terminator = Proc([TLSBENCH, "terminate", cert, key, f"127.0.0.1:{echo_port}"])
    sides = {"native": terminator.port, "warden": warden.port}
    bulk = {k: [] for k in sides}
    rate = {k: [] for k in sides}
    for _ in range(runs):
        for kind, port in sides.items():
            secs = timed([TLSBENCH, "echo-client", f"127.0.0.1:{port}", ca, "localhost", str(size)])
            bulk[kind].append(size / (1 << 20) / secs)
        for kind, port in sides.items():
            secs = timed([TLSBENCH, "handshake-client", f"127.0.0.1:{port}", ca, "localhost", str(handshakes)])
            rate[kind].append(handshakes / secs)
    terminator.stop()
    warden.stop()
    echo.communicate(timeout=60)
    return [("in: echo throughput (MiB/s)", bulk), ("in: handshakes/s", rate)]


def outgoing(size, handshakes, runs):
    ca, cert, key = (os.path.join(TLS, f) for f in ("ca.pem", "server.pem", "server.key"))
    server = Proc([TLSBENCH, "serve", cert, key])
    originator = Proc([TLSBENCH, "originate", ca, "bench.test", f"127.0.0.1:{server.port}"])
    target = f"127.0.0.1:{server.port}"
    warden = [WARDEN, "run", "--cache-dir", CACHE, "--connect-tls", target, "--tls-server-name", "bench.test",
              "--tls-ca", ca, guest("wasm32-wasip2", "bench_client")]
    runs_of = {
        "native": lambda mode, n: timed([native("bench_client"), mode, f"127.0.0.1:{originator.port}", str(n)]),
        "warden": lambda mode, n: timed(warden + [mode, target, str(n)]),
    }
    rows = {"out: download (MiB/s)": ("get", size), "out: upload (MiB/s)": ("put", size),
            "out: handshakes/s": ("ping", handshakes)}
    results = {label: {k: [] for k in runs_of} for label in rows}
    for _ in range(runs):
        for label, (mode, n) in rows.items():
            for kind, run in runs_of.items():
                secs = run(mode, n)
                value = n / secs if mode == "ping" else n / (1 << 20) / secs
                results[label][kind].append(value)
    originator.stop()
    server.stop()
    return list(results.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--handshakes", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    build()
    size = args.size_mib << 20
    rows = incoming(size, args.handshakes, args.runs) + outgoing(size, args.handshakes, args.runs)
    print(f"payload {args.size_mib} MiB, {args.handshakes} handshakes, {args.runs} alternating rounds (median)")
    print(f"{'measure':<32}{'native':>12}{'warden':>12}{'warden/native':>15}")
    for label, values in rows:
        native_v, warden_v = (statistics.median(values[k]) for k in ("native", "warden"))
        print(f"{label:<32}{native_v:>12.1f}{warden_v:>12.1f}{warden_v / native_v:>15.2f}")


if __name__ == "__main__":
    main()
