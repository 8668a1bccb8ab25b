#!/usr/bin/env python3
"""What the tenancy limits (connection quotas, bandwidth limits) cost a
guest that does not use them: Warden as it is now against Warden built from
a baseline revision without them, side by side in one run, on loopback.

Three variants of the same preview1 guests:

- baseline: `warden` built from --baseline (default 9e3ed0a, the last
  commit before quotas and rates);
- current: this checkout's `warden`, no limits (the unlimited path: one
  `Option` per call);
- current+limits: this checkout with limits that never bind
  (--max-egress-rate/--max-ingress-rate 64GiB/s, --max-conns-out/in
  1000000), so every transfer is counted and every connection takes a
  place.

Rows: echo_std throughput (the guest serves; MiB/s), p1_client echo out
(the guest connects out; MiB/s) and http_mio connections/s. Rounds
alternate between the variants, so drift on a busy machine hits all
alike; medians. The goal (issue 22): current within 2% of baseline.

Usage: python3 bench/limiter.py [--baseline REV] [--size-mib N] [--conns N] [--runs N]
The baseline's source goes to bench/out/baseline-src (a git worktree),
built in bench/out/baseline-target (the first run builds its dependencies
too, about 15 minutes on 2 cores).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import net  # noqa: E402  (the guests, the echo and connection loops)

ROOT = net.ROOT
OUT = net.OUT
LIMITS = ["--max-egress-rate", "64GiB/s", "--max-ingress-rate", "64GiB/s",
          "--max-conns-out", "1000000", "--max-conns-in", "1000000"]


def build(baseline):
    net.build()
    current = os.path.join(OUT, "warden-current")
    shutil.copy2(net.WARDEN, current)
    src = os.path.join(OUT, "baseline-src")
    if not os.path.isdir(src):
        subprocess.run(["git", "worktree", "add", "--detach", src, baseline], cwd=ROOT, check=True)
    else:
        subprocess.run(["git", "checkout", "--quiet", "--detach", baseline], cwd=src, check=True)
    # A target directory of its own: cargo names a workspace's artifacts
    # by paths relative to it, so the two checkouts' crates would
    # overwrite each other in one target/.
    target = os.path.join(OUT, "baseline-target")
    # Built as this checkout's release profile builds (LTO, one codegen
    # unit; an older Cargo.toml may not say so), so the ratio is the
    # limiter's and not the profile's.
    env = dict(os.environ, CARGO_PROFILE_RELEASE_LTO="fat", CARGO_PROFILE_RELEASE_CODEGEN_UNITS="1")
    subprocess.run(["cargo", "build", "--release", "-p", "warden", "--quiet",
                    "--target-dir", target], cwd=src, check=True, env=env)
    old = os.path.join(OUT, "warden-baseline")
    shutil.copy2(os.path.join(target, "release", "warden"), old)
    return {"baseline": (old, []), "current": (current, []), "current+limits": (current, LIMITS)}


class Server(net.Server):
    """A guest server under one variant's warden."""

    def __init__(self, binary, extra, name, count):  # noqa: super().__init__ is not wanted
        self.proc = subprocess.Popen(
            [binary, "run", "--cache-dir", net.CACHE, *extra, "--listen", "127.0.0.1:0",
             net.guest(name), str(count)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stderr.readline().decode()
        self.port = int(line.rsplit(":", 1)[1])


def client(binary, extra, port, n):
    addr = f"127.0.0.1:{port}"
    cmd = [binary, "run", "--cache-dir", net.CACHE, *extra, "--allow-connect", addr,
           net.guest("p1_client"), "echo", addr, str(n)]
    done = subprocess.run(cmd, capture_output=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"p1_client failed ({done.returncode}): {done.stderr.decode()}")
    return float(done.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="9e3ed0a")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    variants = build(args.baseline)
    size = args.size_mib << 20
    rows = []

    servers = {v: Server(b, x, "echo_std", args.runs) for v, (b, x) in variants.items()}
    times = {v: [] for v in variants}
    for _ in range(args.runs):
        for v, s in servers.items():
            times[v].append(net.throughput(s.port, size))
    for s in servers.values():
        s.finish()
    rows.append(("echo_std throughput (MiB/s)", {v: args.size_mib / statistics.median(t) for v, t in times.items()}))

    echo = net.Server("native", "echo_std", len(variants) * (args.runs + 1))
    for v, (b, x) in variants.items():
        client(b, x, echo.port, 1)
    times = {v: [] for v in variants}
    for _ in range(args.runs):
        for v, (b, x) in variants.items():
            times[v].append(client(b, x, echo.port, size))
    echo.finish()
    rows.append(("p1_client echo out (MiB/s)", {v: args.size_mib / statistics.median(t) for v, t in times.items()}))

    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    servers = {v: Server(b, x, "http_mio", args.conns * args.runs) for v, (b, x) in variants.items()}
    rates = {v: [] for v in variants}
    for _ in range(args.runs):
        for v, s in servers.items():
            rates[v].append(net.conn_rate(s.port, args.conns, request))
    for s in servers.values():
        s.finish()
    rows.append(("http_mio connections/s", {v: statistics.median(r) for v, r in rates.items()}))

    names = list(variants)
    print(f"{'measure':<30}" + "".join(f"{n:>16}" for n in names) + f"{'current/base':>14}{'limits/base':>13}")
    for label, values in rows:
        base = values["baseline"]
        print(f"{label:<30}" + "".join(f"{values[n]:>16.1f}" for n in names)
              + f"{values['current'] / base:>14.3f}{values['current+limits'] / base:>13.3f}")
    print("goal: current/base >= 0.98 on every row")


if __name__ == "__main__":
    main()
