#!/usr/bin/env bash
# run_store_bench.sh MW_BROKER MW [RUNS]
#
# What durability costs: `mw bench --stages 2 --workers 1` against a broker
# on `--store :memory:` and against one on a fresh SQLite file (every job
# journaled, one commit per loop turn), interleaved RUNS times (default 1)
# so machine noise hits both alike. Target: the file store reaches at least
# half of the in-memory throughput. MW_BENCH_JOBS overrides the job count.
#
# Run through meson:  meson test -C BUILD --benchmark store -v
# or directly:        bench/run_store_bench.sh BUILD/bin/mw-broker BUILD/bin/mw 3
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 MW_BROKER MW [RUNS]" >&2
  exit 2
fi
broker_exe=$1
mw_exe=$2
runs=${3:-${MW_BENCH_RUNS:-1}}
jobs=${MW_BENCH_JOBS:-200000}

work=$(mktemp -d)
broker_pid=
cleanup() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# shellcheck source=bench/wait_for_address.sh
source "$(dirname "$0")/wait_for_address.sh"

run_one() {  # run_one STORE: prints mw bench's jobs/s against a broker on STORE
  "$broker_exe" --bind 'tcp://127.0.0.1:*' --pub 'tcp://127.0.0.1:*' --store "$1" --log-level info \
    2>"$work/broker.log" &
  broker_pid=$!
  local address
  address=$(wait_for_address mw-broker "$broker_pid" "$work/broker.log")
  "$mw_exe" bench --broker "$address" --stages 2 --workers 1 --jobs "$jobs" --json 2>>"$work/bench.log" |
    grep -o '"jobs_per_second":[0-9.]*' | cut -d: -f2
  kill "$broker_pid"
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=
}

echo "$(nproc) CPU(s); load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
printf '%-6s %16s %16s %8s\n' "run" ":memory: jobs/s" "file jobs/s" "file/mem"
for run in $(seq "$runs"); do
  memory=$(run_one :memory:)
  rm -f "$work"/mw.db*
  file=$(run_one "$work/mw.db")
  awk -v run="$run" -v m="$memory" -v f="$file" 'BEGIN { printf "%-6s %16.0f %16.0f %7.0f%%\n", run, m, f, 100 * f / m }'
done
echo "target: file >= 50% of :memory: (mw bench --stages 2 --workers 1, $jobs jobs of 50 bytes)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -s "$work/bench.log" ]; then
  echo "stderr of the runs:"
  sed 's/^/  /' "$work/bench.log"
fi
