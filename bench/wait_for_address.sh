# wait_for_address NAME PID LOG: prints the ROUTER address a bench server
# (mw-broker, mw-bench-bare-router) reports in LOG ("serving tcp://…"),
# waiting at most 10 s; fails if PID exits first. Sourced by the scripts.
wait_for_address() {
  local found
  for _ in $(seq 100); do
    found=$(grep -o 'serving tcp://127\.0\.0\.1:[0-9]*' "$3" | head -n1 | cut -d' ' -f2 || true)
    if [ -n "$found" ]; then
      echo "$found"
      return 0
    fi
    if ! kill -0 "$2" 2>/dev/null; then
      echo "bench: $1 exited at start:" >&2
      cat "$3" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "bench: $1 did not report its address within 10 s" >&2
  return 1
}
