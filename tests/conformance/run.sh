#!/usr/bin/env bash
# The public WASI conformance suite (WebAssembly/wasi-testsuite, prebuilt) run
# through Warden with its official runner and tests/conformance/warden.py as
# the runtime adapter. Prints the pass count and each failure with its
# reason; exits non-zero when a test fails that is not in
# expected-failures.toml, or one in it passes (the list must stay true).
#
# Usage: tests/conformance/run.sh [SUITE.tar.xz]
#   SUITE defaults to ../shared/wasi-testsuite-9f80ca35.tar.xz beside the
#   repository (or $WASI_TESTSUITE). Needs Python 3.12 or newer (found on
#   PATH or under pyenv) and PyPI for the runner's two packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:-${WASI_TESTSUITE:-../shared/wasi-testsuite-9f80ca35.tar.xz}}
if [ ! -f "$suite" ]; then
  echo "conformance: no suite at $suite" >&2
  exit 2
fi

python=""
for p in python3.13 python3.12 python3 "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    python=$p
    break
  fi
done
if [ -z "$python" ]; then
  echo "conformance: the suite's runner needs Python 3.12 or newer" >&2
  exit 2
fi

out=target/conformance
# Extract afresh: the runner leaves files behind in the suite's tree.
rm -rf "$out/suite"
mkdir -p "$out/suite" "$out/audit"
tar -xJf "$suite" -C "$out/suite"
if [ ! -x "$out/venv/bin/python" ]; then
  "$python" -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check 'requests>=2' 'colorama>=0.4.3'
fi

cargo build --quiet -p warden
root=$(pwd)
export WARDEN="$root/target/debug/warden"
export WARDEN_FLAGS="--cache-dir $root/$out/cache"
export WARDEN_AUDIT_DIR="$root/$out/audit"
status=0
(cd "$out/suite" && "$root/$out/venv/bin/python" run-tests \
    -r "$root/tests/conformance/warden.py" \
    -e "$root/tests/conformance/expected-failures.toml" \
    --disable-colors --json-output-location "$root/$out/results.json") >"$out/runner.log" 2>&1 || status=$?
"$root/$out/venv/bin/python" "$root/tests/conformance/summary.py" "$out/results.json" || status=$?
if [ "$status" -ne 0 ]; then
  echo "conformance: FAILED (runner output in $out/runner.log, audit logs in $out/audit)" >&2
fi
exit "$status"
