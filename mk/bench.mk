# `make bench`: every benchmark (bench/run.py), alternatives interleaved in one run; prints the
# tables, writes bench/results.md and bench/results.json and refreshes the Benchmarks block of
# README.md. Needs wrk (installed with apt-get when missing and possible), the mysql and sqlite3
# clients, taskset (util-linux; without it the run is not pinned to CPUs, and says so), and
# MariaDB on 127.0.0.1:3306 (root, no password; the bench creates and drops its own databases).
#
#   make bench                              # everything (about 12 minutes on 2 cores, builds aside)
#   make bench BENCH_ARGS='--only fuel'     # one section: fuel, overhead, collector
#   make bench BENCH_ARGS='--rounds 7'      # more rounds
#   make bench BENCH_ARGS='--rounds 1 --seconds 1 --latency-seconds 1'   # a quick smoke run
#   make bench BENCH_ARGS='--variants none,noop,wasm-v8 --extra-workloads all'
#   make bench BENCH_README=0               # leave README.md alone
#
# Builds reuse the profiles other targets build (wasm profile for the filter and the no-op
# filter bench/noop-filter, release for the collector as `make run`, dev for the fuel example
# as `make test`), in $(BENCH_TARGET_DIR).

BENCH_TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BENCH_ARGS ?=
BENCH_README ?= 1
# When this make started, so the bench can report its total time including the builds.
bench: BENCH_STARTED := $(shell date +%s)

.PHONY: bench bench-build bench-tools

## bench: filter overhead in Envoy (against no filter and a no-op wasm filter), wasm fuel, collector throughput and memory; see README "Benchmarks"
bench: setup bench-tools bench-build
	python3 bench/run.py --target-dir $(BENCH_TARGET_DIR) --started-at $(BENCH_STARTED) \
	  $(if $(filter 1,$(BENCH_README)),--readme) $(BENCH_ARGS)

bench-build: setup
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --profile wasm --target wasm32-wasip1 -p mcp-filter -p noop-filter -p hostcall-filter
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --release -p host-collector --bins
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --example wasm_fuel

bench-tools:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq wrk; \
	  else echo "make bench needs wrk (apt-get install wrk)" >&2; exit 1; fi; }
	@command -v mysql >/dev/null || { echo "make bench needs the mysql client (apt-get install mariadb-client)" >&2; exit 1; }
	@command -v sqlite3 >/dev/null || { echo "make bench needs sqlite3 (apt-get install sqlite3)" >&2; exit 1; }
	@command -v taskset >/dev/null || echo "warning: taskset (util-linux) missing: make bench will run unpinned (apt-get install util-linux)" >&2
