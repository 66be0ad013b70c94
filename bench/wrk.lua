-- wrk script of `make bench` (bench/run.py): POSTs one workload's body (the file named by
-- BENCH_BODY) with the headers of an MCP Streamable HTTP client, then prints one JSON line
-- (prefix BENCH_JSON) with the request count and latency percentiles in microseconds.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["authorization"] = "Bearer bench-client-credential-7f3a9"
wrk.headers["mcp-protocol-version"] = "2025-06-18"
wrk.headers["mcp-session-id"] = "3c9a1f2e-5d4b-4a7e-9c1d-2b8e7f6a5c4d"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,'
      .. '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
