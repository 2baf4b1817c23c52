#!/usr/bin/env bash
# Instructions per proxied request under callgrind, for one or more gateway builds:
# gateway-1w over three fixed-response nginx tasks on 127.0.0.2-4:3000, `wrk -t1 -c16`,
# counters zeroed after a 5 s warm-up, 10 s measured. Deterministic to about +-25
# instructions per request whatever else the machine does (BENCHMARKS.md, session 9).
#
#   benches/load/callgrind.sh target/release/stratix-gateway /tmp/gw-before
#   AUTH=1 benches/load/callgrind.sh target/release/stratix-gateway   # [auth] on, every request
#                                                                     # with a bearer token
#
# Needs valgrind, nginx (nginx-light), wrk and curl from Debian. Loopback only; every wrk run
# is bounded; everything started here is stopped on exit. Dumps stay in $STATE (printed).
set -euo pipefail
[ "$#" -gt 0 ] || { sed -n 2,9p "$0"; exit 2; }
STATE=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
# The load script's own task and gateway configs (one worker), so both measure the same thing.
path=$(python3 - "$STATE" "$(dirname "$0")" "${AUTH:-}" <<'EOP'
import sys
from pathlib import Path
state, here, auth = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
sys.path.insert(0, here)
import run
for i, host in enumerate(run.TASKS):
    name = f"task{i + 1}"
    (state / f"{name}.conf").write_text(run.UPSTREAM_NGINX.format(
        state=state, name=name, workers=1, listen=f"{host}:{run.TASK_PORT}"))
eps = ", ".join(f'"{h}:{run.TASK_PORT}"' for h in run.TASKS)
toml = run.GATEWAY_TOML.format(listen="127.0.0.1:18090", admin="127.0.0.1:18190", workers=1, endpoints=eps)
if auth:
    toml += run.AUTH_TOML.format(secret=run.AUTH_SECRET)
    (state / "auth.header").write_text(f"Authorization: Bearer {run.bench_token(run.AUTH_SECRET)}")
(state / "gw.toml").write_text(toml)
print(run.BENCH_PATH)
EOP
)
for i in 1 2 3; do
  nginx -c "$STATE/task$i.conf" -e "$STATE/task$i.error.log" &
  pids+=($!)
done
sleep 1
n=0
hdr=()
[ -f "$STATE/auth.header" ] && hdr=(-H "$(cat "$STATE/auth.header")")
for bin in "$@"; do
  n=$((n + 1))
  out="$STATE/callgrind.$n"
  valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out" "$bin" --config "$STATE/gw.toml" \
    2>"$STATE/valgrind.$n.log" &
  vg=$!
  for _ in $(seq 1 300); do curl -fs http://127.0.0.1:18090/health >/dev/null && break; sleep 0.2; done
  timeout 30 wrk -t1 -c16 -d5s "${hdr[@]}" "http://127.0.0.1:18090$path" >/dev/null
  callgrind_control -z "$vg" >/dev/null
  report=$(timeout 30 wrk -t1 -c16 -d10s "${hdr[@]}" "http://127.0.0.1:18090$path")
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  requests=$(awk '/requests in/ {print $1}' <<<"$report")
  total=$(awk -F': ' '/^summary:/ {print $2; exit}' "$out.1")
  echo "$bin: $requests requests, $total instructions, $((total / requests)) per request ($out.1)"
  kill "$vg"; wait "$vg" 2>/dev/null || true
done
echo "dumps in $STATE"
