#!/usr/bin/env bash
# Runs fuzz targets side by side, FUZZ_JOBS at a time (default: the CPUs), each under the
# same libFuzzer budget; every target's whole output goes to fuzz/<target>.log and its
# summary (executions, any error) is printed once it ends. Exit 1 when any target failed:
# the reproducer is in fuzz/artifacts/<target>/.
#
#   tools/fuzz_run.sh "<libFuzzer budget, e.g. -max_total_time=15>" "<cargo fuzz flags>" TARGET...
set -uo pipefail
budget=$1 flags=$2
shift 2
cd "$(dirname "$0")/../fuzz" || exit 1
jobs=${FUZZ_JOBS:-$(nproc)}

run_one() {
  local t=$1
  mkdir -p "corpus/$t"
  # shellcheck disable=SC2086 # the flags and the budget are word lists
  cargo +nightly fuzz run $flags "$t" -- $budget -max_len=65536 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$t.log" 2>&1
  local rc=$?
  {
    echo "== fuzz $t ($budget): $([ $rc -eq 0 ] && echo ok || echo "FAILED, exit $rc")"
    grep -E "^(stat::number_of_executed_units|==[0-9]+== ERROR|SUMMARY|Done)" "$t.log"
  } | sed "s/^/[$t] /"
  return $rc
}
export -f run_one
export budget flags

printf '%s\n' "$@" | xargs -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}
