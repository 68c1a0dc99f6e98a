#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a broker, a two-stage
# worker pipeline (sampleworker: sin(x) → nextworker: a report) and a
# listener, submits a few jobs (one of them bad input), shows the results,
# the events and the broker's status, then stops everything it started.
#
#   bash examples/demo.sh            # ports 5555/5556 unless MW_DEMO_PORT is set
set -euo pipefail
cd "$(dirname "$0")/.."

.ci/install-deps
[ -f build/build.ninja ] || meson setup build --wrap-mode=nodownload >/dev/null
ninja -C build >/dev/null

port=${MW_DEMO_PORT:-5555}
export MW_BROKER="tcp://127.0.0.1:$port"
logs=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$logs"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The embedded default store, SQLite, in a fresh file: jobs, entities and
# events are on disk, and a rerun does not pick up an earlier run's jobs.
step "mw-broker on $MW_BROKER (events on port $((port + 1)), SQLite store $logs/mw.db)"
build/bin/mw-broker --bind "$MW_BROKER" --pub "tcp://127.0.0.1:$((port + 1))" --store "$logs/mw.db" \
  2>"$logs/broker.log" &
pids+=($!)
for _ in $(seq 50); do grep -q serving "$logs/broker.log" && break; sleep 0.1; done
grep serving "$logs/broker.log" || { cat "$logs/broker.log"; exit 1; }

step "workers: 2 × sampleworker → nextworker, 1 × nextworker; a listener on \$mw.flow.done and \$mw.job.dead"
build/examples/sample_worker --log-level warn & pids+=($!)
build/examples/sample_worker --log-level warn & pids+=($!)
build/examples/next_worker --log-level warn & pids+=($!)
build/bin/mw listen '$mw.flow.done' '$mw.job.dead' >"$logs/events.jsonl" & pids+=($!)
sleep 0.5

step "mw submit sampleworker 0.5 --wait"
build/bin/mw submit sampleworker 0.5 --wait

step "ten jobs in the background, then one bad input"
for x in 1 2 3 4 5 6 7 8 9 10; do printf '%s ' "$(build/bin/mw submit sampleworker "$x")"; done; echo
build/bin/mw submit sampleworker '"not a number"' --wait || echo "(exit status $?, as expected for bad input)"

step "any command is a worker: mw-exec --type shout -- tr a-z A-Z"
build/bin/mw-exec --type shout --log-level warn -- tr a-z A-Z & pids+=($!)
sleep 0.3
build/bin/mw submit shout '{"greeting": "hello from mw"}' --wait

sleep 0.5
step "what the listener saw (mw listen)"
cat "$logs/events.jsonl"

step "mw status"
build/bin/mw status
