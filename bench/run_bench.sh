#!/usr/bin/env bash
# run_bench.sh MW_BROKER MW MW_BENCH_BARE_ROUTER [RUNS]
#
# Starts the given mw-broker on free loopback ports, runs `mw bench` for
# throughput (--stages 2 --workers 1) and latency (--serial) against it, runs
# the bare ROUTER baseline with the same shapes, and prints them side by side.
# The baseline runs twice: as mw does (router in its own process, started
# with --serve; workers and producer in another: "bare") and all in one
# process ("bare 1-proc", which saves the switches between address spaces).
# RUNS (default $MW_BENCH_RUNS, else 1) repeats the four measurements,
# interleaved, so machine noise hits both alike. Extra figures: MW_BENCH_JOBS,
# MW_BENCH_SERIAL_JOBS override the job counts. When mw-bench-round-trip sits
# next to MW_BENCH_BARE_ROUTER (as meson builds it), each run also times one
# ZeroMQ round trip between two processes: a serial flow makes three, so
# three of them show how much of its latency is the transport's (for scale:
# not a strict floor, since both processes sit idle between messages).
#
# Run through meson:  meson test -C BUILD --benchmark pipeline -v
# or directly:        bench/run_bench.sh BUILD/bin/mw-broker BUILD/bin/mw BUILD/bench/mw-bench-bare-router 3
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 MW_BROKER MW MW_BENCH_BARE_ROUTER [RUNS]" >&2
  exit 2
fi
broker_exe=$1
mw_exe=$2
bare_exe=$3
runs=${4:-${MW_BENCH_RUNS:-1}}
jobs=${MW_BENCH_JOBS:-200000}
serial_jobs=${MW_BENCH_SERIAL_JOBS:-20000}
shape=(--stages 2 --workers 1)
round_trip_exe=$(dirname "$bare_exe")/mw-bench-round-trip
[ -x "$round_trip_exe" ] || round_trip_exe=

work=$(mktemp -d)
broker_pid=
bare_pid=
cleanup() {
  for pid in $broker_pid $bare_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# wait_for_address NAME PID LOG: the tcp://127.0.0.1:PORT that LOG reports after "serving".
# shellcheck source=bench/wait_for_address.sh
source "$(dirname "$0")/wait_for_address.sh"

"$broker_exe" --bind 'tcp://127.0.0.1:*' --pub 'tcp://127.0.0.1:*' --store :memory: --log-level info \
  2>"$work/broker.log" &
broker_pid=$!
"$bare_exe" --serve 2>"$work/bare.log" &
bare_pid=$!
address=$(wait_for_address mw-broker "$broker_pid" "$work/broker.log")
bare_address=$(wait_for_address mw-bench-bare-router "$bare_pid" "$work/bare.log")
echo "mw-broker: $address (pid $broker_pid); bare router: $bare_address (pid $bare_pid)"
echo "$(nproc) CPU(s); load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"

# field JSON KEY: a number from one line of bench JSON.
field() { grep -o "\"$2\":[0-9.e+-]*" <<<"$1" | head -n1 | cut -d: -f2; }

row() {  # row LABEL JSON
  printf '%-28s %12s %10s %10s %10s %10s\n' "$1" "$(field "$2" jobs_per_second)" "$(field "$2" p50)" \
    "$(field "$2" p99)" "$(field "$2" p999)" "$(field "$2" max)"
}

# Interleaved, so that a change in the machine's load hits every variant alike.
labels=("mw throughput" "bare throughput" "bare 1-proc throughput" "mw --serial" "bare --serial" "bare 1-proc --serial")
results=()
round_trips=()
for run in $(seq "$runs"); do
  results+=("$("$mw_exe" bench --broker "$address" "${shape[@]}" --jobs "$jobs" --json 2>>"$work/bench.log")")
  results+=("$("$bare_exe" --router "$bare_address" "${shape[@]}" --jobs "$jobs" --json 2>>"$work/bench.log")")
  results+=("$("$bare_exe" "${shape[@]}" --jobs "$jobs" --json 2>>"$work/bench.log")")
  results+=("$("$mw_exe" bench --broker "$address" "${shape[@]}" --jobs "$serial_jobs" --serial --json 2>>"$work/bench.log")")
  results+=("$("$bare_exe" --router "$bare_address" "${shape[@]}" --jobs "$serial_jobs" --serial --json 2>>"$work/bench.log")")
  results+=("$("$bare_exe" "${shape[@]}" --jobs "$serial_jobs" --serial --json 2>>"$work/bench.log")")
  for ((k = ${#results[@]} - 6; k < ${#results[@]}; ++k)); do echo "${results[k]}"; done
  if [ -n "$round_trip_exe" ]; then
    round_trips+=("$("$round_trip_exe" --round-trips "$serial_jobs" --json 2>>"$work/bench.log")")
    echo "${round_trips[-1]}"
  fi
done

echo
printf '%-28s %12s %10s %10s %10s %10s\n' "run what (2 stages x 1)" "jobs/s" "p50 us" "p99 us" "p99.9 us" "max us"
for ((i = 0; i < ${#results[@]}; i += 6)); do
  run=$((i / 6 + 1))
  for k in 0 1 2 3 4 5; do row "$run ${labels[k]}" "${results[i + k]}"; done
  if [ -n "$round_trip_exe" ]; then
    rt=$(field "${round_trips[run - 1]}" p50)
    awk -v r="$rt" 'BEGIN { printf "%-28s %12s %10.1f   (3 x %.1f us, transport alone, for scale)\n", \
      "  3 ZeroMQ round trips", "", 3 * r, r }'
  fi
  mw=$(field "${results[i]}" jobs_per_second)
  bare=$(field "${results[i + 1]}" jobs_per_second)
  awk -v m="$mw" -v b="$bare" 'BEGIN { if (b > 0) printf "%-28s %11.0f%%\n", "  mw / bare throughput", 100 * m / b }'
done
echo
echo "jobs/s counts whole flows (one SUBMIT through both stages to its RESULT); stage jobs are twice that."
echo "bare = mw-bench-bare-router: a minimal one-thread ROUTER loop; no ACCEPTED (one message fewer per flow)."
echo "targets: mw >= 120000 jobs/s and not below bare; mw --serial p50 <= 300 us."
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -s "$work/bench.log" ]; then
  echo "stderr of the runs:"
  sed 's/^/  /' "$work/bench.log"
fi
