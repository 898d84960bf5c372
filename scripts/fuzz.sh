#!/usr/bin/env bash
# Runs cambio's fuzz targets (tests/fuzz: cargo-fuzz and libFuzzer, on the nightly toolchain) one after
# the other, each for SECONDS (default 30), and exits non-zero when any target crashed (a panic, a hang
# past 10 s on one input, or memory past the RSS limit).
#   scripts/fuzz.sh [SECONDS] [TARGET...]        # no TARGET: all of them
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 3600      # stop each target after 10 million inputs (or the time)
# Each target grows its working corpus in target/fuzz-corpus/<target>/ (not committed), starting from the
# committed seeds and regressions in tests/fuzz/corpus-regressions/<target>/. A crashing input is written
# to tests/fuzz/artifacts/<target>/: minimise it (`cargo +nightly fuzz tmin --fuzz-dir tests/fuzz -s none
# TARGET FILE`), fix the bug, and commit the input to corpus-regressions/<target>/ so
# tests/fuzz_regressions.rs keeps it fixed on stable.
#
# No sanitizer (`-s none`): cambio has no unsafe code; the fuzzers look for panics (overflow checks are
# on), hangs and unbounded memory, and run faster without AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
shift || true
fuzz_dir=tests/fuzz
target_dir=target/fuzz
rss_mb=${FUZZ_RSS_MB:-1024}
# 16 codegen units: the build (every dependency, instrumented) takes minutes on a small machine; the
# targets run slightly slower, which a 30-second smoke does not mind.
flags=(--fuzz-dir "$fuzz_dir" -s none --target-dir "$target_dir" --codegen-units 16)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$fuzz_dir")
fi

echo "== building ${#targets[@]} fuzz targets"
start=$(date +%s)
cargo +nightly fuzz build "${flags[@]}"
echo "== built in $(($(date +%s) - start)) s"

# Longest input per target: past each decoder's own size limit, so the limit itself is exercised.
max_len() {
  case "$1" in
    checkpoint) echo 65536 ;;
    csv_ticks | factor_csv | config) echo 16384 ;;
    *) echo 8192 ;;
  esac
}

failed=()
mkdir -p target/fuzz-logs
for t in "${targets[@]}"; do
  corpus=target/fuzz-corpus/$t
  seeds=$fuzz_dir/corpus-regressions/$t
  mkdir -p "$corpus" "$seeds"
  log=target/fuzz-logs/$t.log
  args=(-max_total_time="$secs" -max_len="$(max_len "$t")" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb"
    -timeout=10 -print_final_stats=1)
  if [ -n "${FUZZ_RUNS:-}" ]; then
    args+=(-runs="$FUZZ_RUNS")
  fi
  echo "== fuzzing $t for up to $secs s"
  if cargo +nightly fuzz run "${flags[@]}" "$t" "$corpus" "$seeds" -- "${args[@]}" >"$log" 2>&1; then
    status=ok
  else
    status=CRASHED
    failed+=("$t")
    tail -n 40 "$log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs_taken=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  echo "== $t: $status, ${runs:-?} executions (${secs_taken:-?} per second), log $log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (inputs in $fuzz_dir/artifacts/)" >&2
  exit 1
fi
echo "== no crash in ${targets[*]}"
