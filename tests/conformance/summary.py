"""Print the conformance run's pass count and every failure with its
reason, from the runner's JSON results. Exits 1 when a test failed that was
not expected to, or passed though listed as an expected failure."""

import json
import sys

results = json.load(open(sys.argv[1], encoding="UTF-8"))["results"]
total = passed = 0
unexpected = []
expected = []
stale = []
for suite in results:
    for test in suite["tests"]:
        total += 1
        name = f"{suite['name']}: {test['name']}"
        outcome = test["outcome"]
        if outcome == "pass":
            passed += 1
        elif outcome == "xpass":
            passed += 1
            stale.append(name)
        elif outcome == "xfail":
            expected.append((name, test["failures"]))
        elif outcome == "fail":
            unexpected.append((name, test["failures"]))
runtime = results[0]["runtime"] if results else {"name": "?", "version": "?"}
print(f"conformance: {passed}/{total} tests pass with {runtime['name']} {runtime['version']}"
      f" ({len(expected)} expected failures, {len(unexpected)} unexpected, {len(stale)} listed as failing but passing)")
for label, items in (("unexpected failure", unexpected), ("expected failure", expected)):
    for name, failures in items:
        print(f"  {label}: {name}")
        for f in failures:
            for line in f.strip().splitlines()[:12]:
                print(f"      {line}")
for name in stale:
    print(f"  passes but is listed in expected-failures.toml: {name}")
sys.exit(1 if unexpected or stale else 0)
