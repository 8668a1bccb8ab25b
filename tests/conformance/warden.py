"""wasi-testsuite runtime adapter for Warden.

The suite's runner (`run-tests -r THIS_FILE`) calls `compute_argv` for each
test, and this turns the test's spec into a `warden run` (wasi:cli/command)
or `warden serve` (wasi:http/service) command line that grants the test
exactly what it asks for, and nothing else:

- its arguments, environment variables and directory (`--env`, `--dir`);
- network grants only when its proposals include `sockets` or `http`, and
  then only as wide as the test needs: an HTTP test may connect to the
  servers the runner started for it (their addresses arrive as
  HTTP_SERVER_<NAME> variables); a sockets test gets the loopback grants
  listed for it in SOCKETS below.

Everything else stays denied, so the pass count measures conformance of a
secure configuration. Set WARDEN to the binary (default: `warden` on PATH);
WARDEN_FLAGS are added after the subcommand (for example `--cache-dir DIR`);
WARDEN_AUDIT_DIR, if set, gets one audit log per test.
"""

import os
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

WARDEN = shlex.split(os.getenv("WARDEN", "warden"), posix=True)
WARDEN_FLAGS = shlex.split(os.getenv("WARDEN_FLAGS", ""), posix=True)

# The grants of each sockets test (by the test file's stem), read off what
# each test does (`WARDEN_AUDIT_DIR` shows it). The tests talk to
# themselves over loopback on ports the kernel picks; some bind the
# unspecified address, and the bind tests try documentation addresses
# (192.0.2.1, 198.51.100.1, 203.0.113.1, 2001:db8::1), which the kernel must
# refuse as not bindable, so the policy has to let the attempt through.
def _each(flag: str, targets: List[str]) -> List[str]:
    return [a for t in targets for a in (flag, t)]


LOOPBACK = ["127.0.0.1:*", "[::1]:*"]
UNSPECIFIED = ["0.0.0.0:*", "[::]:*"]
DOCUMENTATION = ["192.0.2.1:*", "198.51.100.1:*", "203.0.113.1:*", "[2001:db8::1]:*"]
TCP = _each("--allow-listen", LOOPBACK) + _each("--allow-connect", LOOPBACK)
UDP = _each("--allow-udp", LOOPBACK) + _each("--allow-udp-bind", LOOPBACK)
SOCKETS: Dict[str, List[str]] = {
    "sockets-echo": _each("--allow-listen", LOOPBACK),
    "sockets-tcp-bind": TCP + _each("--allow-listen", UNSPECIFIED + DOCUMENTATION),
    "sockets-tcp-connect": TCP,
    "sockets-tcp-listen": TCP + _each("--allow-listen", UNSPECIFIED),
    "sockets-tcp-properties": [],
    "sockets-tcp-receive": TCP,
    "sockets-tcp-send": TCP,
    "sockets-udp-bind": UDP + _each("--allow-udp-bind", UNSPECIFIED + DOCUMENTATION),
    "sockets-udp-connect": UDP,
    "sockets-udp-properties": [],
    "sockets-udp-receive": UDP,
    "sockets-udp-send": UDP,
}


def get_name() -> str:
    return "warden"


def get_version() -> str:
    result = subprocess.run(WARDEN[0:1] + ["--version"], encoding="UTF-8",
                            capture_output=True, check=True)
    return result.stdout.split()[1]


def get_wasi_versions() -> List[str]:
    return ["wasm32-wasip1", "wasm32-wasip3"]


def get_wasi_worlds() -> List[str]:
    return ["wasi:cli/command", "wasi:http/service"]


def get_timeout_seconds() -> float:
    # Debug builds compile a component in about a second; leave room.
    return 30.0


def _grants(test_path: str, env: Dict[str, str],
            proposals: List[str]) -> List[str]:
    grants: List[str] = []
    if "http" in proposals:
        for name, addr in sorted(env.items()):
            if name.startswith("HTTP_SERVER_"):
                grants += ["--allow-connect", addr]
    if "sockets" in proposals:
        grants += SOCKETS.get(Path(test_path).stem, [])
    return grants


def _remove_leftover_symlinks(root: Path) -> None:
    # A filesystem test leaves `parent.cleanup -> ..` in the shared fixture
    # directory, and the runner's clean-up skips symlinks, so the next test
    # would see a directory that is not its fixture (filesystem-read-directory
    # then fails in any runtime). Restore the fixture before each test.
    for f in root.glob("**/*.cleanup"):
        if f.is_symlink():
            f.unlink()


def compute_argv(test_path: str,
                 args_env_root: Tuple[List[str], Dict[str, str], Optional[str]],
                 proposals: List[str],
                 wasi_world: str,
                 wasi_version: str) -> List[str]:
    args, env, root = args_env_root
    del wasi_version  # Warden tells the kind of program from its bytes.
    serve = wasi_world == "wasi:http/service"
    argv = WARDEN + (["serve", "--addr", "127.0.0.1:0"] if serve else ["run"])
    argv += WARDEN_FLAGS
    audit_dir = os.getenv("WARDEN_AUDIT_DIR")
    if audit_dir:
        argv += ["--audit", str(Path(audit_dir) / (Path(test_path).stem + ".jsonl"))]
    for k, v in env.items():
        argv += ["--env", f"{k}={v}"]
    if root:
        _remove_leftover_symlinks(Path(root))
        argv += ["--dir", f"{root}::/"]
    argv += _grants(test_path, env, proposals)
    return argv + [test_path] + args
