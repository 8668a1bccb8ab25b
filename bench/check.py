#!/usr/bin/env python3
"""Regression check: every benchmark, briefly, each ratio against its goal.

Runs bench/startup.py, net.py, tls.py and serve.py with short settings
(the scripts' own defaults are for the numbers in docs/benchmarks.md; these
are for "did anything slip"), reads the ratios they print, and prints one
line per ratio: the measure, the ratio, its goal and whether it holds.
Exits 1 when a ratio misses its goal, 0 when all hold.

Every ratio is Warden against its baseline measured side by side in the
same run (see each script), so the goals are ratios, not times:
- start-up is Warden's time over `wasmtime run`'s (lower is better);
- everything else is Warden's rate over the baseline's (higher is better).

Brief runs are noisy; a miss by a few hundredths is worth a full run of
that script before anything else.

Usage: python3 bench/check.py [--only startup,net,tls,serve]
Needs what the scripts need (wrk, hey; the wasmtime CLI is fetched).
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Short settings for each script.
BRIEF = {
    "startup": ["--runs", "7"],
    "net": ["--size-mib", "64", "--conns", "600", "--out-conns", "3000", "--runs", "3"],
    "tls": ["--size-mib", "64", "--handshakes", "200", "--runs", "3"],
    "serve": ["--seconds", "3", "--runs", "2"],
}

# Goals: (pattern for the measure, "<=" or ">=", the goal). The first
# pattern that matches a measure gives its goal.
GOALS = [
    (r"hello .* cold", "<=", 1.0),
    (r"hello .* warm", "<=", 0.8),
    (r"^warden / wasmtime serve", ">=", 1.5),
    (r"^warden https / http", ">=", 0.9),
    (r"^warden traced / untraced", ">=", 0.9),
    (r"^warden / native hyper", None, None),  # the ceiling: shown, no goal
    (r"^(in|out): ", ">=", 1.0),  # TLS: in-process TLS beats a proxy hop
    (r".", ">=", 0.9),  # preview1 networking against native
]

# How each script prints a ratio: a table row ending in three numbers
# (startup, net, tls: the last is the ratio) or a line `LABEL: 1.23x`
# (serve).
ROW = re.compile(r"^(?P<label>\S.*?)\s+[\d.]+\s+[\d.]+\s+(?P<ratio>[\d.]+)$")
LINE = re.compile(r"^(?P<label>.+?): (?P<ratio>[\d.]+)x$")


def goal(label):
    for pattern, op, value in GOALS:
        if re.search(pattern, label):
            return op, value
    return None, None


def ratios(name, out):
    found = []
    for line in out.splitlines():
        m = ROW.match(line) if name != "serve" else LINE.match(line)
        if m:
            found.append((m.group("label"), float(m.group("ratio"))))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BRIEF),
                    help="which scripts, comma-separated (default: all)")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BRIEF]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BRIEF)})")
    missed = 0
    rows = []
    for name in names:
        script = os.path.join(ROOT, "bench", f"{name}.py")
        print(f"running {name}.py {' '.join(BRIEF[name])}", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, script, *BRIEF[name]], capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            raise SystemExit(f"{name}.py failed (exit {done.returncode})")
        found = ratios(name, done.stdout)
        if not found:
            raise SystemExit(f"{name}.py printed no ratios:\n{done.stdout}")
        rows.extend((name, label, ratio) for label, ratio in found)
    print(f"{'bench':<9}{'measure':<44}{'ratio':>7}  goal     ")
    for name, label, ratio in rows:
        op, value = goal(label)
        if op is None:
            verdict, shown = "", "-"
        else:
            holds = ratio <= value if op == "<=" else ratio >= value
            verdict = "ok" if holds else "MISSES"
            missed += not holds
            shown = f"{op} {value:.2f}"
        print(f"{name:<9}{label:<44}{ratio:>7.2f}  {shown:<8} {verdict}")
    print(f"{missed} of {len(rows)} ratios miss their goal" if missed else f"all {len(rows)} ratios hold")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
