#!/usr/bin/env bash
# Sets up and runs every test: installs missing Debian packages, builds,
# runs the unit and integration suites, then the same again under
# AddressSanitizer + UndefinedBehaviorSanitizer. Ends with the totals as
# "N passed, N failed" and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

.ci/install-deps

configure() {  # dir, extra meson options...
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" --wrap-mode=nodownload "$@" >/dev/null
  else
    meson setup "$dir" --wrap-mode=nodownload "$@" >/dev/null
  fi
}

passed=0
failed=0
run_suite() {  # build dir
  local dir=$1 status=0
  meson test -C "$dir" --print-errorlogs --no-rebuild || status=$?
  # Count from meson's own log: one JSON object per test.
  read -r p f < <(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL"): p += 1
    elif r != "SKIP": f += 1
print(p, f)
PY
)
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$status" -eq 0 ] || [ "$f" -gt 0 ] || failed=$((failed + 1))
}

echo "== build (debugoptimized)"
configure build
ninja -C build
run_suite build

echo "== build with AddressSanitizer + UndefinedBehaviorSanitizer"
# A unity build (8 sources per unit) compiles the heavy headers (cppzmq,
# msgpack, nlohmann/json, doctest) a few times instead of once per file: it
# halves this half's compile time. The plain build above keeps every source
# compiling on its own.
configure build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug -Dunity=on -Dunity_size=8
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_suite build-asan

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
