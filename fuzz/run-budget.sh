#!/usr/bin/env bash
# Runs every fuzz target for a fixed budget and prints a Markdown table of
# what each did: executions, execs/s, corpus entries and coverage at the
# end, and whether it found anything. A measurement, not a test: run it by
# hand (or on a spare machine), never in CI.
#
# Usage: fuzz/run-budget.sh [SECONDS_PER_TARGET]     (default 120)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable compiler takes
# its nightly flags with RUSTC_BOOTSTRAP=1. Seeds: the checked-in hostile
# tar vectors for the tar and overlay targets. Corpora persist in
# fuzz/corpus/<target> (git-ignored), so later runs start where this one
# stopped; a crash lands in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")"
budget=${1:-120}
export RUSTC_BOOTSTRAP=1
targets=(names manifest container payload_tar boot_inputs overlay)

for t in payload_tar overlay; do
  mkdir -p "corpus/$t"
  cp -n ../bundle-tool/overlay/tests/vectors/*.tar "corpus/$t/" 2>/dev/null || true
done
cargo fuzz build -O >&2

printf '| target | seconds | executions | execs/s | corpus | coverage (cov) | found |\n'
printf '|---|---:|---:|---:|---:|---:|---|\n'
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$budget" -print_final_stats=1 >"$log" 2>&1; then
    found=nothing
  else
    found="CRASH (see fuzz/artifacts/$t/)"
    failed=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  corpus=$(find "corpus/$t" -type f | wc -l)
  printf '| `%s` | %s | %s | %s | %s | %s | %s |\n' "$t" "$budget" "${execs:-?}" "${speed:-?}" "$corpus" "${cov:-?}" "$found"
  rm -f "$log"
done
exit "$failed"
