#!/usr/bin/env bash
# The local pipeline: host-collector (SQLite by default, MariaDB/MySQL when MYSQL_URL is set),
# demo MCP servers (rmcp), then Envoy with the filter (envoy/envoy.yaml) shipping to the
# collector. Everything listens on loopback; Ctrl-C (or SIGTERM) stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_BIN=${ENVOY_BIN:-.venv/bin/envoy}
BIN=target/release
LOGS=run
mkdir -p "$LOGS"

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped."
}
trap stop INT TERM EXIT

wait_http() { # url name
  for _ in $(seq 1 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$2 did not come up; see $LOGS/" >&2; exit 1
}

# Must match the token in envoy/envoy.yaml.
export COLLECTOR_TOKEN=${COLLECTOR_TOKEN:-local-dev-collector-token-change-me}
# Credential fingerprints are keyed (HMAC-SHA256) under a secret made once per checkout and
# kept in $LOGS, so fingerprints stay comparable across runs; the filter gets the same key
# through a copy of envoy/envoy.yaml.
KEY_FILE=$LOGS/fingerprint.key
if [ ! -s "$KEY_FILE" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KEY_FILE")
fi
export COLLECTOR_FINGERPRINT_KEY
COLLECTOR_FINGERPRINT_KEY=$(cat "$KEY_FILE")
sed "s|\"validation\": \"reject\",|\"validation\": \"reject\", \"fingerprint_key\": \"$COLLECTOR_FINGERPRINT_KEY\",|" \
  envoy/envoy.yaml >"$LOGS/envoy.yaml"
grep -q '"fingerprint_key"' "$LOGS/envoy.yaml" || { echo "could not add the fingerprint key to $LOGS/envoy.yaml" >&2; exit 1; }
DATABASE_URL=${MYSQL_URL:-sqlite://$LOGS/host-collector.db}
# OTLP export is off unless OTLP_ENDPOINT is set (e.g. http://127.0.0.1:4318, an
# OpenTelemetry Collector or Jaeger's OTLP/HTTP port).
OTLP_ARGS=()
if [ -n "${OTLP_ENDPOINT:-}" ]; then OTLP_ARGS=(--otlp-endpoint "$OTLP_ENDPOINT"); fi
"$BIN/host-collector" --listen 127.0.0.1:9400 --metrics-listen 127.0.0.1:9401 \
  --database-url "$DATABASE_URL" --spool-dir "$LOGS/host-collector-spool" \
  --gateway-health-url http://127.0.0.1:10000/.well-known/mcp-gateway/health "${OTLP_ARGS[@]}" \
  >"$LOGS/host-collector.log" 2>&1 & pids+=($!)
wait_http http://127.0.0.1:9400/health host-collector

"$BIN/demo-mcp-server" --listen 127.0.0.1:9500 >"$LOGS/demo-mcp-server.log" 2>&1 & pids+=($!)
"$BIN/demo-mcp-sse-server" --listen 127.0.0.1:9501 >"$LOGS/demo-mcp-sse-server.log" 2>&1 & pids+=($!)
wait_http http://127.0.0.1:9500/healthz demo-mcp-server
wait_http http://127.0.0.1:9501/healthz demo-mcp-sse-server

"$ENVOY_BIN" -c "$LOGS/envoy.yaml" --concurrency 2 --disable-hot-restart --log-level info \
  >"$LOGS/envoy-access.log" 2>"$LOGS/envoy.log" & pids+=($!)
wait_http http://127.0.0.1:9901/ready envoy

cat <<TXT
Local pipeline is up (logs in $LOGS/):
  MCP (Streamable HTTP) via Envoy  http://127.0.0.1:10000/mcp/demo/mcp
  MCP (legacy HTTP+SSE) via Envoy  http://127.0.0.1:10000/mcp/legacy/sse
  filter health (upstreams)        http://127.0.0.1:10000/.well-known/mcp-gateway/health
  audit view                       http://127.0.0.1:9400/ui/#token=$COLLECTOR_TOKEN
  collector query API              http://127.0.0.1:9400/v1/logs, /v1/accounting, /v1/upstreams (bearer token)
  collector metrics (Prometheus)   http://127.0.0.1:9401/metrics
  Envoy stats (Prometheus)         http://127.0.0.1:9901/stats/prometheus (admin http://127.0.0.1:9901)
  OTLP export                      ${OTLP_ENDPOINT:-off (set OTLP_ENDPOINT=http://host:4318)}
  store                            $DATABASE_URL
  fingerprint key                  $KEY_FILE (filter and collector; credentials fingerprinted as hmac-sha256:…)
  demo MCP servers                 http://127.0.0.1:9500/mcp, http://127.0.0.1:9501/sse
Prometheus: prometheus --config.file=deploy/prometheus/prometheus.yml (rules and Grafana dashboard in deploy/)
Traffic:  make demo-traffic
Rows:     curl -s -H "authorization: Bearer \$COLLECTOR_TOKEN" 'http://127.0.0.1:9400/v1/logs?event=response&limit=5'
          (COLLECTOR_TOKEN=$COLLECTOR_TOKEN)
Events also in $LOGS/envoy.log (grep mcp_event).
Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
