#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) from its checked-in seeds; exits
# non-zero on the first crash or failed property, leaving the input under fuzz/artifacts/.
#
#   fuzz/run.sh            # 60 s per target (what CI runs)
#   fuzz/run.sh 600        # 10 minutes per target
#   fuzz/run.sh 3600 chunked   # one target for an hour
#
# Why stable with RUSTC_BOOTSTRAP: cargo-fuzz passes -Z flags to rustc, and a machine of this
# kind is only sure to have the stable toolchain. Why `--sanitizer none`: the crate has no
# `unsafe`, so AddressSanitizer finds nothing safe Rust does not already check, at about half
# the speed; `-O -a` keeps optimisations and turns on debug assertions and overflow checks,
# so a length computation that wraps is a crash here.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(request_head response_head chunked framing_fields edge_headers)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none -O -a
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  # New inputs go to the scratch corpus (first directory); seeds/ stays as checked in.
  log="$corpus/$target.log"
  status=0
  cargo fuzz run --sanitizer none -O -a "$target" "$corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=20000 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${seconds}s without a failure"
