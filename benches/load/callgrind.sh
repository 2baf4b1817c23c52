#!/usr/bin/env bash
# Instructions per proxied request under callgrind, for one or more gateway builds:
# gateway-1w over three fixed-response nginx tasks on 127.0.0.2-4:3000, `wrk -t1 -c16`,
# counters zeroed after a 5 s warm-up, 10 s measured. Deterministic to about +-25
# instructions per request whatever else the machine does (BENCHMARKS.md, session 9).
#
#   benches/load/callgrind.sh target/release/stratix-gateway /tmp/gw-before
#
# Needs valgrind, nginx (nginx-light), wrk and curl from Debian. Loopback only; every wrk run
# is bounded; everything started here is stopped on exit. Dumps stay in $STATE (printed).
set -euo pipefail
[ "$#" -gt 0 ] || { sed -n 2,9p "$0"; exit 2; }
STATE=$(mktemp -d)
PATH_="/api/icalink/v1/attendance/19644/checkin"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
for i in 2 3 4; do
  mkdir -p "$STATE/tmp-task$i"
  t="$STATE/tmp-task$i"
  cat > "$STATE/task$i.conf" <<EOC
worker_processes 1; daemon off; pid $STATE/task$i.pid; error_log $STATE/task$i.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_timeout 75s; keepalive_requests 10000000;
  client_body_temp_path $t; proxy_temp_path $t; fastcgi_temp_path $t; uwsgi_temp_path $t; scgi_temp_path $t;
  server { listen 127.0.0.$i:3000; location = /health { return 200 "ok\n"; }
    location / { default_type application/json; return 200 '{"ok":true}'; } } }
EOC
  nginx -c "$STATE/task$i.conf" -e "$STATE/task$i.err" &
  pids+=($!)
done
cat > "$STATE/gw.toml" <<EOC
[server]
listen = "127.0.0.1:18090"
admin_listen = "127.0.0.1:18190"
workers = 1
shutdown_drain = "0s"
shutdown_timeout = "2s"
[log]
level = "warn"
access_log = false
[upstreams.app-icalink]
endpoints = ["127.0.0.2:3000", "127.0.0.3:3000", "127.0.0.4:3000"]
pool_idle_timeout = "60s"
[upstreams.app-icalink.health]
path = "/health"
interval = "5s"
[[routes]]
prefix = "/api/icalink/"
upstream = "app-icalink"
EOC
sleep 1
n=0
for bin in "$@"; do
  n=$((n + 1))
  out="$STATE/callgrind.$n"
  valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out" "$bin" --config "$STATE/gw.toml" \
    2>"$STATE/valgrind.$n.log" &
  vg=$!
  for _ in $(seq 1 300); do curl -fs http://127.0.0.1:18090/health >/dev/null && break; sleep 0.2; done
  timeout 30 wrk -t1 -c16 -d5s "http://127.0.0.1:18090$PATH_" >/dev/null
  callgrind_control -z "$vg" >/dev/null
  report=$(timeout 30 wrk -t1 -c16 -d10s "http://127.0.0.1:18090$PATH_")
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  requests=$(awk '/requests in/ {print $1}' <<<"$report")
  total=$(awk -F': ' '/^summary:/ {print $2; exit}' "$out.1")
  echo "$bin: $requests requests, $total instructions, $((total / requests)) per request ($out.1)"
  kill "$vg"; wait "$vg" 2>/dev/null || true
done
echo "dumps in $STATE"
