# Reliability and security suite (docs/reliability.md).
#   make test-reliability        faults, hostile input, secrets, auth (short variants, ~6 min)
#   RELIABILITY_LONG=1 make test-reliability   the long variants (60 s MariaDB outage)
#   make fuzz-short              every fuzz target for FUZZ_SHORT_SECONDS (CI)
#   make fuzz-long               every fuzz target for FUZZ_LONG_RUNS executions (on demand)
# Figures: every test prints `RELIABILITY {json}`; they are collected in $(RELIABILITY_FIGURES).

.PHONY: test-reliability fuzz-build fuzz-short fuzz-long

RELIABILITY_FIGURES ?= $(CURDIR)/target/reliability-figures.jsonl
FUZZ_TARGETS := jsonrpc_parse_body sse_parser traceparent_parse collector_ndjson_line collector_status_accounting collector_ingest_request exchange_chunking
FUZZ_SHORT_SECONDS ?= 25
FUZZ_LONG_RUNS ?= 10000000
# -a: debug assertions and overflow checks on, so arithmetic overflow is a crash.
# The sanitizer build of every dependency takes minutes on 2 cores and depends only on
# Cargo.lock: it is kept outside the checkout (a build cache, like ~/.cargo/registry), so a
# clean clone rebuilds only the project's crates. Set FUZZ_TARGET_DIR=fuzz/target to opt out.
FUZZ_TARGET_DIR ?= $(HOME)/.cache/mcp-gateway/fuzz-target
FUZZ_FLAGS ?= -a --target-dir $(FUZZ_TARGET_DIR)

test-reliability: build
	@mkdir -p $(dir $(RELIABILITY_FIGURES)); : > $(RELIABILITY_FIGURES)
	RELIABILITY_FIGURES=$(RELIABILITY_FIGURES) cargo test -p host-collector --test hostile_ingest -- --test-threads=1 --nocapture
	cargo test -p host-collector --test hostile_fuzz_regressions
	cargo test -p mcp-filter --test reliability_fuzz_regressions
	RELIABILITY_FIGURES=$(RELIABILITY_FIGURES) cargo test -p mcp-filter --test reliability_pipeline -- --test-threads=1 --nocapture
	@echo "figures: $(RELIABILITY_FIGURES)"; cat $(RELIABILITY_FIGURES) | cut -c1-400

fuzz-build:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	cd fuzz && cargo +nightly fuzz build $(FUZZ_FLAGS)

# Every target under the same budget, FUZZ_JOBS at a time (default: the CPUs; each target
# uses one), so on 2 cores the seven targets take four budgets of wall time, not seven. A crash
# fails make with the reproducer in fuzz/artifacts/<target>/ (turn it into a case of
# tests/reliability_fuzz_regressions.rs or host-collector/tests/hostile_fuzz_regressions.rs).
# Executions are printed per target; the whole output is in fuzz/<target>.log.
# $(1): the libFuzzer budget (`-max_total_time=S` or `-runs=N`).
run_fuzz = tools/fuzz_run.sh "$(1)" "$(FUZZ_FLAGS)" $(FUZZ_TARGETS)

fuzz-short: fuzz-build
	$(call run_fuzz,-max_total_time=$(FUZZ_SHORT_SECONDS))

# Every target until FUZZ_LONG_RUNS executions (10 M: minutes to about 20 minutes each on one
# core). exchange_chunking drives a whole exchange twice per input and runs at ~2 k inputs/s
# under AddressSanitizer (over an hour); the filter's core is safe Rust, so its long run can go
# without it (~8 k/s, 20 minutes), in a build directory of its own so the sanitizer build
# that fuzz-short reuses stays intact:
#   make fuzz-long FUZZ_TARGETS=exchange_chunking \
#     FUZZ_FLAGS="-a -s none --target-dir $HOME/.cache/mcp-gateway/fuzz-target-nosan"
fuzz-long: fuzz-build
	$(call run_fuzz,-runs=$(FUZZ_LONG_RUNS))
