#!/usr/bin/env python3
"""`make bench`: every benchmark of the project, alternatives interleaved, medians and ratios.

Sections (each can be run alone with --only):

  overhead   Envoy (1 worker) with no filter / Envoy's native MCP filter + a JSON file access log /
             a no-op wasm filter loaded like ours (bench/noop-filter) / our filter on V8 / our
             filter on wasmtime (if this Envoy has it), shipping to host-collector / our filter
             on V8 shipping to a sink that answers at once (the upstream Envoy); four MCP
             workloads; wrk as the load generator. On the --extra-workloads (json) also our filter
             with `"upstream": {}`, with `"min_level": "debug"`, and with 2 Envoy workers with the
             breaker off and on, and the ABI floor (bench/hostcall-filter `lifecycle`: our
             filter's host calls and holds without its logic). The gateway Envoy under test is pinned to CPU 0 (both CPUs with 2
             workers), everything else to CPU 1 (taskset); its CPU time per request is the primary
             figure; ratios are to no filter and to the no-op filter.
  fuel       wasm instructions (wasmtime fuel) per request lifecycle and per request shipped, and
             the filter's linear memory with the collector down (examples/wasm_fuel.rs).
  collector  host-collector: rows/s persisted into MariaDB by the batched writer vs one INSERT per
             event vs LOAD DATA, the same on SQLite; plus host-collector's own collector-bench
             (ingest events/s over HTTP NDJSON, in-process writer, RSS under a flood with the
             database down).

Writes bench/results.md and bench/results.json, prints the tables, and (with --readme) replaces
the block between the bench markers in README.md. All traffic is on 127.0.0.1; every load run is
bounded in time (wrk -d) or in count (collector floods), and the whole run has a deadline.

Python 3.11 standard library only. Needs: wrk, the mysql and sqlite3 clients, MariaDB on
127.0.0.1:3306 (root, no password) for the collector section, and the binaries `make bench`
builds (see mk/bench.mk).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORKLOADS = json.loads((BENCH / "workloads.json").read_text())["workloads"]
COLLECTOR_TOKEN = "bench-collector-token-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# Budgets and targets the run is checked against; a miss is reported, never hidden.
TOTAL_BUDGET_S = 15 * 60          # acceptance: `make bench` under 15 minutes on this machine
DEADLINE_S = 13 * 60              # measurement deadline: later rounds are skipped (and reported)
COLLECTOR_RSS_OVER_BUDGET = 1.5   # collector peak RSS within 1.5x its queue budget
WASM_GROWTH_OVER_CAP = 1.25       # filter linear memory growth within 1.25x collector.buffer_bytes
# Issue 14 figures (checked against the no-op wasm filter; a miss is reported, not a failure).
CPU_ADDED_US = 15.0               # json: gateway CPU per request added over the no-op filter
P99_ADDED_US = 500.0              # json: p99 with one connection over the no-op filter's
BREAKER_RPS_RATIO = 0.95          # 2 workers: req/s with the breaker on, to breaker off
LIFECYCLE_FUEL = {"json": 25_000, "sse": 40_000, "batch": 60_000}  # wasm fuel per request lifecycle
SHIPPING_FUEL = 1_500             # wasm fuel per request for shipping its events (json)
QUIET_CORES = 0.10                # other processes' load during the Envoy runs, to trust p99 and req/s


def log(msg: str) -> None:
    print(msg, flush=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(value, base):
    if value is None or not base:
        return None
    return value / base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def system_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def wait_until(pred, timeout: float, what: str, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited ({proc.popen.returncode})\n{proc.tail()}")
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s" + (f"\n{proc.tail()}" if proc else ""))


class Proc:
    """A child process we started; stopped by its own pid only."""

    def __init__(self, name: str, argv: list[str], logdir: Path, env: dict | None = None):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.log_file = open(self.log_path, "wb")
        self.popen = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log_file.close()


# ---------------------------------------------------------------------------------------------
# 1. Filter overhead: Envoy without / with filters, wrk
# ---------------------------------------------------------------------------------------------

def listener(name: str, port: int, http_filters: list, routes: list, access_log: list | None = None):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "stream_idle_timeout": "300s",
        "request_timeout": "0s",
        "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]},
        "http_filters": http_filters + [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    }
    if access_log:
        hcm["access_log"] = access_log
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                         "typed_config": hcm}]}],
    }


def cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def upstream_config(port: int, admin: int) -> dict:
    """The fast static MCP upstream: Envoy answering each workload's path with its canned
    JSON-RPC response (direct_response). The buffer filter reads the whole request first, so the
    reply comes after the request and the connection stays alive."""
    routes = [{
        "match": {"path": w["path"]},
        "direct_response": {"status": w["status"], "body": {"inline_string": w["response"]}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": w["content_type"]},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    } for w in WORKLOADS] + [{
        # The sink of the `wasm-v8-sink` variant: every event batch accepted at once.
        "match": {"path": "/v1/logs"},
        "direct_response": {"status": 200, "body": {"inline_string": SINK_ANSWER}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    }]
    buffer = {"name": "envoy.filters.http.buffer", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 1048576}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [listener("upstream", port, [buffer], routes)]},
    }


# The variants of the overhead benchmark. `kind`: none, native or wasm. A wasm variant names its
# module (`ours`: mcp_filter.wasm, `noop`: bench/noop-filter), its runtime, what it adds to the
# default plugin configuration (`plugin`), and Envoy's workers. `extra`: a variant of our filter
# that runs only on the --extra-workloads (json by default), to keep `make bench` in its budget.
# Every wasm variant is loaded the same way (same Envoy, runtime, `allow_on_headers_stop_iteration`,
# plugin configuration string and collector cluster): the no-op filter ignores its configuration.
VARIANTS = {
    "none": {"label": "no filter", "kind": "none"},
    "native": {"label": "native envoy.filters.http.mcp + JSON file access log", "kind": "native"},
    "noop": {"label": "no-op wasm filter (bench/noop-filter), V8, loaded like ours", "kind": "wasm",
             "module": "noop"},
    "wasm-v8": {"label": "our filter, V8, default configuration, shipping to host-collector", "kind": "wasm"},
    "wasm-v8-sink": {"label": "our filter, V8, default configuration, its batches answered at once by a "
                              "sink (a route of the upstream Envoy) instead of host-collector: the "
                              "filter's own cost, without the collector's writes on CPU 1",
                      "kind": "wasm", "sink": True},
    "wasm-wasmtime": {"label": "our filter, wasmtime, default configuration, shipping to host-collector",
                      "kind": "wasm", "runtime": "wasmtime"},
    "wasm-v8-upstream": {"label": 'our filter, V8, + `"upstream": {}` (health and circuit breaker on, defaults)',
                         "kind": "wasm", "plugin": {"upstream": {}}, "extra": True},
    "wasm-v8-all-levels": {"label": 'our filter, V8, + `"min_level": "debug"` (every event level on, '
                                    'whatever the default min_level is)',
                           "kind": "wasm", "plugin": {"min_level": "debug"}, "extra": True},
    "wasm-v8-2w": {"label": "our filter, V8, 2 Envoy workers (gateway on both CPUs), breaker off "
                            "(default configuration)", "kind": "wasm", "workers": 2, "extra": True},
    "wasm-v8-2w-breaker": {"label": 'our filter, V8, 2 Envoy workers (gateway on both CPUs), breaker on '
                                    '(`"upstream": {}`)',
                           "kind": "wasm", "plugin": {"upstream": {}}, "workers": 2, "extra": True},
}
# Host-call calibration (`--calibrate`, or named in --variants): bench/hostcall-filter, the no-op
# filter plus CALIBRATION_CALLS calls of one host call per request; json only.
CALIBRATION_CALLS = 30
HOSTCALLS = ["get_current_time", "get_property", "get_header_map_pairs", "get_header_map_value",
             "replace_header_map_value", "get_buffer_bytes"]
for _call in HOSTCALLS:
    VARIANTS["hostcall-" + _call] = {
        "label": f"calibration: the no-op filter + {CALIBRATION_CALLS} `{_call}` per request "
                 f"(bench/hostcall-filter)",
        "kind": "wasm", "module": "hostcall", "plugin": {"hostcall": _call, "count": CALIBRATION_CALLS},
        "extra": True, "calibration": _call}
# The floor under our filter: its host calls for a json tools/call, once each, with its holds,
# and no logic (bench/hostcall-filter, `lifecycle`); json only, like the other extra variants.
VARIANTS["abi-floor"] = {
    "label": "our filter's host calls and holds for a json tools/call, once each, no logic and no "
             "events (bench/hostcall-filter `lifecycle`): what any filter doing this job pays "
             "through the ABI",
    "kind": "wasm", "module": "hostcall", "plugin": {"hostcall": "lifecycle"}, "extra": True}
SINK = "wasm-v8-sink"
# What the sink answers to every batch (the filter reads the status and the rejected lines).
SINK_ANSWER = '{"accepted":0,"rejected":[],"duplicates":0}'
# The pair compared with 2 workers: breaker on against breaker off.
BREAKER_OFF, BREAKER_ON = "wasm-v8-2w", "wasm-v8-2w-breaker"


def plugin_config(variant: str) -> dict:
    """The plugin configuration of a wasm variant: the filter's defaults plus a collector, plus
    the variant's additions."""
    plugin = {"collector": {"cluster": "collector", "authority": "collector", "token": COLLECTOR_TOKEN}}
    plugin.update(VARIANTS[variant].get("plugin", {}))
    return plugin


def gateway_config(variant: str, port: int, admin: int, upstream: int, collector: int,
                   wasm: Path, workdir: Path) -> dict:
    spec = VARIANTS[variant]
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "0s"}}]
    clusters = [cluster("upstream", upstream)]
    filters, access_log = [], None
    if spec["kind"] == "native":
        filters = [{"name": "envoy.filters.http.mcp", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"}}]
        md = "envoy.filters.http.mcp"
        access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(workdir / "native-access.log"),
            "log_format": {"json_format": {
                "start_time": "%START_TIME%",
                "method": "%REQ(:METHOD)%",
                "path": "%REQ(:PATH)%",
                "status": "%RESPONSE_CODE%",
                "duration_ms": "%DURATION%",
                "upstream_host": "%UPSTREAM_HOST%",
                "session_id": "%REQ(MCP-SESSION-ID)%",
                "mcp_method": f"%DYNAMIC_METADATA({md}:method)%",
                "jsonrpc_id": f"%DYNAMIC_METADATA({md}:id)%",
                "tool": f"%DYNAMIC_METADATA({md}:params:name)%",
            }},
        }}]
    elif spec["kind"] == "wasm":
        runtime = "envoy.wasm.runtime." + spec.get("runtime", "v8")
        filters = [{"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "mcp",
                "root_id": "mcp",
                # Required: lets the filter read the body while it holds the headers (docs/filter.md).
                "allow_on_headers_stop_iteration": True,
                "vm_config": {"vm_id": "mcp", "runtime": runtime,
                              "code": {"local": {"filename": str(wasm)}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(plugin_config(variant))},
            }}}]
        clusters.append(cluster("collector", upstream if spec.get("sink") else collector))
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [listener("gateway", port, filters, routes, access_log)],
                             "clusters": clusters},
    }


def envoy_argv(envoy: str, config: Path, log_path: Path, workers: int = 1) -> list[str]:
    return [envoy, "-c", str(config), "--concurrency", str(workers), "--disable-hot-restart",
            "--log-level", "warn", "--log-path", str(log_path)]


def pinning(no_pin: bool) -> tuple[dict | None, str | None]:
    """CPU sets for the overhead section: the gateway Envoy under test on CPU 0 (both CPUs with
    2 workers), everything else (wrk, the upstream Envoy, host-collector, this script) on CPU 1.
    Returns (plan, None) or (None, why the run is not pinned)."""
    if no_pin:
        return None, "pinning disabled (--no-pin)"
    if not shutil.which("taskset"):
        return None, "`taskset` not found (util-linux): processes NOT pinned, results less stable"
    allowed = os.sched_getaffinity(0)
    if not {0, 1} <= allowed:
        return None, f"CPUs 0 and 1 not both available to this process (allowed: {sorted(allowed)}): NOT pinned"
    return {"gateway": "0", "gateway_2_workers": "0,1", "others": "1"}, None


def pinned(plan: dict | None, role: str, argv: list[str]) -> list[str]:
    return argv if plan is None else ["taskset", "-c", plan[role], *argv]


def cpus_allowed(pid: int) -> str | None:
    """The CPUs a running process may use, as the kernel reports them (read back, not assumed)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def envoy_stats(admin: int, needle: str) -> dict[str, int]:
    _, text = http_get(f"http://127.0.0.1:{admin}/stats?filter={needle}")
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


def stat_suffix(stats: dict[str, int], suffix: str) -> int:
    """A stat summed over every name ending with `suffix` (workers, prefixes)."""
    return sum(v for k, v in stats.items() if k.endswith(suffix))


def check_response(port: int, w: dict) -> str | None:
    """One request of the workload; None if the upstream's canned answer came back intact."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", w["path"], body=w["request"].encode(), headers={
            "content-type": "application/json", "accept": "application/json, text/event-stream",
            "authorization": "Bearer bench-client-credential-7f3a9",
            "mcp-protocol-version": "2025-06-18"})
        r = conn.getresponse()
        body = r.read().decode()
        if r.status != w["status"] or body != w["response"]:
            return f"{w['name']}: status {r.status}, body {body[:120]!r}"
        return None
    except OSError as e:
        return f"{w['name']}: {e}"
    finally:
        conn.close()


@contextlib.contextmanager
def yielding(pid: int, active: bool):
    """Runs the block with every thread of `pid` under SCHED_IDLE (when `active`), then puts
    them back under SCHED_OTHER: the collector still gets all of CPU 1 that wrk and the upstream
    Envoy leave idle, but any of them that wakes up runs at once instead of waiting out the
    collector's time slice (nice 19 is not enough: the kernel lets the running task finish its
    slice, a few milliseconds)."""
    threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")] if active else []
    changed = []
    for tid in threads:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            changed.append(tid)
        except OSError:
            pass
    try:
        yield
    finally:
        for tid in changed:
            try:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:
                pass


def settle_collector(pid: int, shipped: bool, quiet: float = 0.3, timeout: float = 60) -> float:
    """Waits until host-collector has taken and written everything of the run that just ended,
    so the next run (the 1-connection latency run, or another variant) does not share CPU 1 with
    its backlog; returns the collector CPU seconds spent meanwhile, to add to the run's. After a
    run of our filter it first waits out the filter's flush interval (1 s: its last events leave
    the gateway by age), then until the collector's CPU time stops moving for `quiet` seconds."""
    start = cpu_ticks(pid)
    if shipped:
        time.sleep(1.2)  # the filter's default flush_interval_ms, plus a tick
    deadline = time.monotonic() + timeout
    last = cpu_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_ticks(pid)
        if now == last:
            break
        last = now
    return (last - start) / CLK_TCK


def wrk(port: int, w: dict, body_file: Path, connections: int, seconds: float, pids: dict[str, int],
        plan: dict | None) -> dict:
    """One wrk run (pinned with the other non-gateway processes); adds the CPU time of each of
    our processes (`pids`: role -> pid) and of the rest of the machine."""
    env = dict(os.environ, BENCH_BODY=str(body_file))
    argv = pinned(plan, "others", ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
                                   "-s", str(BENCH / "wrk.lua"), f"http://127.0.0.1:{port}{w['path']}"])
    before_cpu = {role: cpu_ticks(pid) for role, pid in pids.items()}
    before_sys = system_busy_ticks()
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 30)
    elapsed = time.monotonic() - started
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_sys = system_busy_ticks()
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {(out.stderr or out.stdout).strip()[-300:]}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    ours = {role: (cpu_ticks(pids[role]) - t) / CLK_TCK for role, t in before_cpu.items()}
    wrk_cpu = (after_children.ru_utime + after_children.ru_stime
               - before_children.ru_utime - before_children.ru_stime)
    busy = (after_sys[0] - before_sys[0]) / CLK_TCK
    r["cpu_s"] = ours
    r["wrk_cpu_s"] = wrk_cpu
    r["elapsed_s"] = elapsed
    # Cores kept busy by everything else on the machine (other builds) during this run.
    r["other_cores"] = max(0.0, (busy - sum(ours.values()) - wrk_cpu) / elapsed)
    return r


CAS_STATS = ("mcp_filter_cas_retries", "mcp_filter_cas_lost_updates")


def cas_snapshot(admin: int) -> dict[str, int]:
    stats = envoy_stats(admin, "mcp_filter_cas")
    return {s: stat_suffix(stats, s) for s in CAS_STATS}


def bench_overhead(ctx: dict) -> dict:
    cfg = ctx["args"]
    work = ctx["workdir"] / "overhead"
    work.mkdir()
    procs: list[Proc] = []
    section = {"variants": {}, "workloads": [], "notes": [], "misses": []}
    plan, unpinned = pinning(cfg.no_pin)
    section["pinning"] = {"plan": plan, "unpinned_reason": unpinned, "processes": {}}
    if unpinned:
        log(f"  NOTE: {unpinned}")
        section["notes"].append(unpinned)
    extra_workloads = {w["name"] for w in WORKLOADS} if cfg.extra_workloads == "all" else \
        {s.strip() for s in cfg.extra_workloads.split(",") if s.strip()}
    section["extra_workloads"] = sorted(extra_workloads)
    wanted = [v for v in VARIANTS
              if (cfg.variants == "all" and (cfg.calibrate or not VARIANTS[v].get("calibration")))
              or v in cfg.variants.split(",")]
    own_affinity = os.sched_getaffinity(0)
    try:
        if plan:
            # This script too: it only waits during the runs, but keep it off the gateway's CPU.
            os.sched_setaffinity(0, {int(c) for c in plan["others"].split(",")})
            section["pinning"]["processes"]["bench/run.py"] = cpus_allowed(os.getpid())
            section["pinning"]["processes"]["wrk"] = plan["others"] + " (taskset -c)"
        # The collector our filter ships to (SQLite store, as `make run`). Deployed, it runs on
        # its own host; here it shares CPU 1 with wrk and the upstream Envoy, so during each wrk
        # run of a 1-worker variant it is SCHED_IDLE (`yielding`: it writes in the CPU time they
        # leave idle and catches up while the run settles; a collector that fell behind shows as
        # dropped events). Its CPU per request is the report's `collector CPU/req` column.
        coll_port, coll_metrics = free_port(), free_port()
        collector = Proc("collector", pinned(plan, "others", [
            str(ctx["bin"] / "host-collector"), "--listen", f"127.0.0.1:{coll_port}",
            "--metrics-listen", f"127.0.0.1:{coll_metrics}", "--database-url", f"sqlite://{work}/collector.db",
            "--token", COLLECTOR_TOKEN, "--log-level", "warn"]), work)
        procs.append(collector)
        wait_until(lambda: http_get(f"http://127.0.0.1:{coll_port}/health")[0] == 200, 30,
                   "host-collector", collector)
        section["pinning"]["processes"]["host-collector"] = cpus_allowed(collector.pid)

        up_port, up_admin = free_port(), free_port()
        (work / "upstream.json").write_text(json.dumps(upstream_config(up_port, up_admin), indent=1))
        upstream = Proc("upstream", pinned(plan, "others", envoy_argv(
            ctx["envoy"], work / "upstream.json", work / "upstream-envoy.log")), work)
        procs.append(upstream)
        wait_until(lambda: http_get(f"http://127.0.0.1:{up_admin}/ready")[0] == 200, 60, "upstream envoy", upstream)
        section["pinning"]["processes"]["upstream envoy"] = cpus_allowed(upstream.pid)

        gateways = {}

        def unavailable(variant: str, reason: str) -> None:
            section["variants"][variant] = {"label": VARIANTS[variant]["label"], "available": False,
                                            "reason": reason}
            section["misses"].append(f"{variant}: not available: {reason}")
            log(f"  {variant}: NOT AVAILABLE: {reason}")

        for variant in wanted:
            spec = VARIANTS[variant]
            wasm = ctx["wasm_files"][spec.get("module", "ours")] if spec["kind"] == "wasm" else None
            if wasm is not None and not wasm.exists():
                unavailable(variant, f"{wasm} missing (`make bench-build` builds it)")
                continue
            port, admin = free_port(), free_port()
            path = work / f"{variant}.json"
            path.write_text(json.dumps(gateway_config(variant, port, admin, up_port, coll_port,
                                                      wasm, work), indent=1))
            # Validate first: a runtime missing from this Envoy build is reported, not fatal.
            check = subprocess.run([ctx["envoy"], "--mode", "validate", "-c", str(path),
                                    "--log-level", "warn", "--disable-hot-restart"],
                                   capture_output=True, text=True, timeout=120)
            if check.returncode != 0:
                lines = (check.stdout + check.stderr).strip().splitlines() or [f"exit {check.returncode}"]
                reason = next((l.split("] ", 2)[-1] for l in lines if "compiled without support" in l), lines[-1])
                unavailable(variant, reason)
                continue
            workers = spec.get("workers", 1)
            proc = Proc(variant, pinned(plan, "gateway" if workers == 1 else "gateway_2_workers",
                                        envoy_argv(ctx["envoy"], path, work / f"{variant}-envoy.log", workers)), work)
            procs.append(proc)
            try:
                wait_until(lambda: http_get(f"http://127.0.0.1:{admin}/ready")[0] == 200, 60, f"envoy {variant}", proc)
            except RuntimeError as e:
                unavailable(variant, f"did not start: {str(e).splitlines()[0]}")
                continue
            problems = [p for p in (check_response(port, w) for w in WORKLOADS) if p]
            if problems:
                # Existing check: every variant must relay the upstream's canned responses intact.
                unavailable(variant, f"does not relay the canned responses intact: {problems}")
                section["misses"].append(f"relay: {variant}: {problems}")
                continue
            gateways[variant] = {"port": port, "admin": admin, "proc": proc}
            cpus = cpus_allowed(proc.pid)
            section["variants"][variant] = {"label": spec["label"], "available": True, "workers": workers,
                                            "extra": bool(spec.get("extra")), "cpus": cpus}
            if spec["kind"] == "wasm":
                section["variants"][variant]["module"] = wasm.name
                section["variants"][variant]["plugin_config"] = plugin_config(variant)
            section["pinning"]["processes"][f"gateway envoy {variant}"] = cpus
        log(f"  every variant relays the canned responses intact; wrk {cfg.connections} connections "
            f"x {cfg.seconds} s for req/s, 1 connection x {cfg.latency_seconds} s for latency, "
            f"{cfg.rounds} rounds; extra variants of ours on: {', '.join(sorted(extra_workloads)) or 'none'}")
        if plan:
            log("  pinned (taskset -c): gateway Envoy on CPU " + plan["gateway"] + " (2-worker variants on "
                + plan["gateway_2_workers"] + "), wrk, upstream Envoy, host-collector on CPU " + plan["others"])

        body_files = {}
        for w in WORKLOADS:
            body_files[w["name"]] = work / f"body-{w['name']}.json"
            body_files[w["name"]].write_text(w["request"])
        per_round = sum(len([v for v in gateways if not VARIANTS[v].get("extra") or w["name"] in extra_workloads])
                        for w in WORKLOADS) * (cfg.seconds + cfg.latency_seconds + 0.25)
        log(f"  about {per_round:.0f} s per round, {per_round * cfg.rounds / 60:.1f} min for {cfg.rounds} rounds")

        others = {"upstream": upstream.pid, "collector": collector.pid}
        names = {w["name"]: [v for v in gateways if not VARIANTS[v].get("extra") or w["name"] in extra_workloads]
                 for w in WORKLOADS}
        cells = {w["name"]: {v: {"load": [], "latency": [], "cas": []} for v in names[w["name"]]} for w in WORKLOADS}
        # Warm-up (V8 tiers up, pools connect); not recorded.
        for w in WORKLOADS:
            for v in names[w["name"]]:
                try:
                    wrk(gateways[v]["port"], w, body_files[w["name"]], cfg.connections, 1, {}, plan)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    section["misses"].append(f"{w['name']}: {v}: warm-up failed: {e}")
        # Rounds outside, workloads inside: a deadline cut or a disturbance (another build on the
        # machine) falls on every workload alike. Within a workload the variants' order rotates.
        for rnd in range(cfg.rounds):
            for w in WORKLOADS:
                wl = names[w["name"]]
                if ctx["past_deadline"]():
                    section["misses"].append(f"{w['name']}: round {rnd + 1} skipped (deadline)")
                    continue
                order = wl[rnd % len(wl):] + wl[:rnd % len(wl)]  # rotate: no fixed position
                line = []
                round_started = time.monotonic()
                for v in order:
                    g = gateways[v]
                    if g["proc"].popen.poll() is not None:
                        section["misses"].append(f"{w['name']}: {v}: gateway exited ({g['proc'].popen.returncode})")
                        continue
                    pids = {"gateway": g["proc"].pid, **others}
                    try:
                        before = cas_snapshot(g["admin"])
                        ships = (VARIANTS[v]["kind"] == "wasm" and VARIANTS[v].get("module", "ours") == "ours"
                                 and not VARIANTS[v].get("sink"))
                        # Deployed, the collector is on its own host; here it shares CPU 1 with
                        # wrk and the upstream Envoy, so during the runs it takes only the CPU
                        # they leave idle instead of delaying them (it catches up in the settling).
                        # Not with 2 workers: a gateway worker on CPU 1 leaves it too little, and
                        # the filter's buffer would overflow.
                        idle = ships and VARIANTS[v].get("workers", 1) == 1
                        with yielding(collector.pid, idle):
                            load = wrk(g["port"], w, body_files[w["name"]], cfg.connections, cfg.seconds, pids, plan)
                        load["cpu_s"]["collector"] += settle_collector(collector.pid, ships)
                        with yielding(collector.pid, idle):
                            lat = wrk(g["port"], w, body_files[w["name"]], 1, cfg.latency_seconds, pids, plan)
                        lat["cpu_s"]["collector"] += settle_collector(collector.pid, ships)
                        after = cas_snapshot(g["admin"])
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        section["misses"].append(f"{w['name']}: {v}: round {rnd + 1} failed: {e}")
                        continue
                    cell = cells[w["name"]][v]
                    cell["load"].append(load)
                    cell["latency"].append(lat)
                    cell["cas"].append({s: after[s] - before[s] for s in CAS_STATS}
                                       | {"requests": load["requests"] + lat["requests"]})
                    line.append(f"{v} {load['rps']:.0f} req/s "
                                f"{1e6 * load['cpu_s']['gateway'] / max(load['requests'], 1):.0f}us/req "
                                f"p99 {lat['p99_us']}us")
                log(f"  round {rnd + 1} {w['name']} ({time.monotonic() - round_started:.0f} s): " + " | ".join(line))
        for w in WORKLOADS:
            section["workloads"].append(summarize_workload(w, cells[w["name"]], names[w["name"]]))

        # Filter health after the run: every event accounted for. Give the last batches (flushed
        # every second) up to 5 s to leave.
        for v, g in gateways.items():
            if VARIANTS[v]["kind"] != "wasm" or VARIANTS[v].get("module", "ours") != "ours":
                continue
            for _ in range(50):
                stats = envoy_stats(g["admin"], "mcp_filter")
                if stat_suffix(stats, "mcp_filter_events_emitted") == stat_suffix(
                        stats, "mcp_filter_events_shipped") + sum(
                        val for k, val in stats.items() if "mcp_filter_events_dropped_" in k):
                    break
                time.sleep(0.1)
            emitted = stat_suffix(stats, "mcp_filter_events_emitted")
            shipped = stat_suffix(stats, "mcp_filter_events_shipped")
            dropped = {k.split("mcp_filter_events_dropped_")[-1]: val for k, val in stats.items()
                       if "mcp_filter_events_dropped_" in k}
            section["variants"][v]["events"] = {"emitted": emitted, "shipped": shipped, "dropped": dropped}
            section["notes"].append(f"{v}: filter emitted {emitted:,} events, shipped {shipped:,}, "
                                    f"dropped {sum(dropped.values()):,} {dropped}")
            if sum(dropped.values()):
                section["notes"].append(
                    f"{v}: events were dropped: the filter keeps one batch in flight per VM, and while "
                    f"the collector answers slower than these saturating runs emit, the buffer "
                    f"(`collector.buffer_bytes`, 8 MiB) absorbs bursts, then drops the oldest, counted. "
                    f"Dropped events are never sent, so this run's cost of shipping is an underestimate.")
        _, metrics = http_get(f"http://127.0.0.1:{coll_metrics}/metrics")
        persisted = re.search(r"^collector_events_persisted_total (\d+)", metrics, re.M)
        section["collector_persisted"] = int(persisted.group(1)) if persisted else None
        section["notes"].append(f"host-collector (SQLite) persisted {section['collector_persisted']} events")
        return section
    finally:
        for p in reversed(procs):
            p.stop()
        os.sched_setaffinity(0, own_affinity)


# Per-row figures that get ratios to the no-filter and the no-op variants.
RATIO_KEYS = ("envoy_cpu_us_per_req", "rps", "p50_us", "p99_us")


def summarize_workload(w: dict, cells: dict, names: list[str]) -> dict:
    rows = {}
    for v in names:
        loads, lats, cas = cells[v]["load"], cells[v]["latency"], cells[v]["cas"]
        if not loads:
            continue
        reqs = sum(r["requests"] for r in loads) or 1
        cas_requests = sum(c["requests"] for c in cas) or 1
        rows[v] = {
            # PRIMARY: the gateway Envoy's (the process under test) CPU time per request under load.
            "envoy_cpu_us_per_req": median([1e6 * r["cpu_s"]["gateway"] / max(r["requests"], 1) for r in loads]),
            "rps": median([r["rps"] for r in loads]),
            "p50_us": median([r["p50_us"] for r in lats]),
            "p99_us": median([r["p99_us"] for r in lats]),
            "p99_loaded_us": median([r["p99_us"] for r in loads]),
            "upstream_cpu_us_per_req": median([1e6 * r["cpu_s"]["upstream"] / max(r["requests"], 1) for r in loads]),
            "collector_cpu_us_per_req": median([1e6 * r["cpu_s"]["collector"] / max(r["requests"], 1) for r in loads]),
            "wrk_cpu_us_per_req": median([1e6 * r["wrk_cpu_s"] / max(r["requests"], 1) for r in loads]),
            "errors": sum(r["errors_connect"] + r["errors_read"] + r["errors_write"] + r["errors_timeout"]
                          for r in loads + lats),
            "status_errors": sum(r["errors_status"] for r in loads + lats),
            "requests": reqs,
            "all_requests": sum(r["requests"] for r in loads + lats),
            "other_cores": median([r["other_cores"] for r in loads]),
            # Cores kept busy under load: the gateway under test, and the load side (wrk, the
            # upstream Envoy, host-collector: the other CPU when pinned). A load side near 1.00
            # means req/s is bounded by the load generator's CPU, not by the gateway.
            "gateway_cores": median([r["cpu_s"]["gateway"] / r["elapsed_s"] for r in loads]),
            "load_side_cores": median([(r["cpu_s"]["upstream"] + r["cpu_s"]["collector"] + r["wrk_cpu_s"])
                                       / r["elapsed_s"] for r in loads]),
            # Summed over the measured runs (load and latency) and over the workers.
            "cas_retries": sum(c["mcp_filter_cas_retries"] for c in cas),
            "cas_lost_updates": sum(c["mcp_filter_cas_lost_updates"] for c in cas),
            "cas_retries_per_1k_req": 1000 * sum(c["mcp_filter_cas_retries"] for c in cas) / cas_requests,
            "rounds": [{"rps": r["rps"], "cpu_us_per_req": 1e6 * r["cpu_s"]["gateway"] / max(r["requests"], 1),
                        "p50_us": l["p50_us"], "p99_us": l["p99_us"]} for r, l in zip(loads, lats)],
        }
    none, noop = rows.get("none", {}), rows.get("noop", {})
    for v, r in rows.items():
        for k in RATIO_KEYS:
            r[k + "_ratio"] = ratio(r[k], none.get(k))        # to no filter
            r[k + "_ratio_noop"] = ratio(r[k], noop.get(k))   # to the no-op wasm filter
        r["envoy_cpu_us_added_over_noop"] = difference(r["envoy_cpu_us_per_req"], noop.get("envoy_cpu_us_per_req"))
        r["p99_us_added_over_noop"] = difference(r["p99_us"], noop.get("p99_us"))
    return {"name": w["name"], "what": w["what"], "expected_status": w["status"], "rows": rows}


def difference(value, base):
    if value is None or base is None:
        return None
    return value - base


# ---------------------------------------------------------------------------------------------
# 2 + 4b. Wasm cost and wasm memory: examples/wasm_fuel.rs
# ---------------------------------------------------------------------------------------------

def bench_fuel(ctx: dict) -> dict:
    out = subprocess.run([str(ctx["fuel_bin"]), str(ctx["wasm"])], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"wasm_fuel failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


# ---------------------------------------------------------------------------------------------
# 3 + 4a. Collector
# ---------------------------------------------------------------------------------------------

def event_line(source: str, seq: int) -> str:
    """The same ~450-byte `response` event line as host-collector's collector-bench."""
    return (f'{{"ts":"2026-11-22T02:53:34.{seq % 1_000_000:06d}Z","source":"{source}","seq":{seq},'
            f'"event":"response","level":"info","message":"tools/call completed",'
            f'"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331",'
            f'"instance_id":"mcp-instance-01","mcp.method.name":"tools/call",'
            f'"gen_ai.tool.name":"search_documents","token_header":"Authorization",'
            f'"token":"sha256:9f86d081884c","jsonrpc.request.id":"{seq}",'
            f'"mcp.session.id":"3c9a1f2e-5d4b-4a7e-9c1d-2b8e7f6a5c4d",'
            f'"rpc.response.status_code":200,"duration_ms":12.5}}')


def row_values(source: str, seq: int) -> list:
    """The columns host-collector derives from event_line(source, seq)."""
    created = f"2026-11-22 02:53:34.{seq % 1_000_000:06d}"
    received = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return ["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "mcp-instance-01", "tools/call",
            "search_documents", "Authorization", "sha256:9f86d081884c", "response", 1,
            event_line(source, seq), source, seq, created, received]


COLUMNS = ("trace_id, span_id, instance_id, mcp_method, tool_name, token_header, token, event, level, "
           "log, source, seq, created_at, received_at")


def sql_literal(v) -> str:
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "''") + "'"


def mysql(sql: str, db: str | None = None, local_infile: bool = False, timeout: float = 300) -> str:
    argv = ["mysql", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "-N", "-B"]
    if local_infile:
        argv.append("--local-infile=1")
    if db:
        argv.append(db)
    out = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"mysql failed: {out.stderr.strip()} ({sql[:100]!r})")
    return out.stdout.strip()


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


class Collector:
    """host-collector as a child process, with its metrics."""

    def __init__(self, ctx: dict, name: str, database_url: str, extra: list[str] = ()):
        self.port, self.metrics_port = free_port(), free_port()
        self.proc = Proc(name, [str(ctx["bin"] / "host-collector"), "--listen", f"127.0.0.1:{self.port}",
                                "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                                "--database-url", database_url, "--token", COLLECTOR_TOKEN,
                                "--log-level", "warn", *extra], ctx["workdir"])
        wait_until(lambda: http_get(f"http://127.0.0.1:{self.port}/health")[0] in (200, 503), 30,
                   "host-collector", self.proc)

    def metric(self, name: str) -> float:
        _, text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def post(self, source: str, first: int, n: int, per_request: int = 500) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            for start in range(first, first + n, per_request):
                body = "".join(event_line(source, s) + "\n"
                               for s in range(start, min(start + per_request, first + n))).encode()
                conn.request("POST", "/v1/logs", body=body, headers={
                    "authorization": f"Bearer {COLLECTOR_TOKEN}", "content-type": "application/x-ndjson"})
                r = conn.getresponse()
                reply = r.read()
                if r.status != 200:
                    raise RuntimeError(f"collector replied {r.status}: {reply[:200]!r}")
        finally:
            conn.close()

    def wait_persisted(self, total: int, timeout: float = 120) -> tuple[float, float]:
        """Polls until `total` events are persisted. Returns (rows, seconds) counted from the
        first poll that saw a write, so connecting and creating the schema are not timed
        (from the first poll if everything was written before it saw anything)."""
        started = time.monotonic()
        deadline = started + timeout
        t0 = p0 = None
        while time.monotonic() < deadline:
            p = self.metric("collector_events_persisted_total")
            now = time.monotonic()
            if t0 is None and p > 0:
                t0, p0 = now, p
            if p >= total:
                return (total - p0, now - t0) if p0 < total else (total, now - started)
            time.sleep(0.01)
        raise RuntimeError(f"collector persisted only {self.metric('collector_events_persisted_total')} of {total}")

    def stop(self) -> None:
        self.proc.stop()


def batched_through_binary(ctx: dict, name: str, database_url: str, make_reachable, n: int) -> float:
    """The real binary's batched writer: its queue is filled while the database is unreachable,
    then the database appears and the writer drains the queue; rows/s of the drain."""
    c = Collector(ctx, name, database_url, ["--retry-initial-backoff", "10ms", "--retry-max-backoff", "20ms",
                                            "--health-check-interval", "60s"])
    try:
        c.post(name, 1, n)
        queued = c.metric("collector_queue_entries")
        if queued < n:
            raise RuntimeError(f"{name}: only {queued} of {n} events queued before the database appeared")
        make_reachable()
        rows, seconds = c.wait_persisted(n)
        return rows / seconds
    finally:
        c.stop()


def bench_collector(ctx: dict) -> dict:
    cfg = ctx["args"]
    work = ctx["workdir"] / "collector"
    work.mkdir()
    tag = f"bench_{os.getpid()}"
    section = {"mariadb": {}, "sqlite": {}, "collector_bench": {}, "misses": [], "notes": []}
    n_batched, n_single, n_load = cfg.collector_rows, cfg.single_rows, cfg.collector_rows
    created: list[str] = []

    def create_db(name: str) -> None:
        mysql(f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}")
        created.append(name)

    try:
        mysql("SELECT 1")
    except Exception as e:  # noqa: BLE001
        section["misses"].append(f"MariaDB at 127.0.0.1:3306 unreachable: {e}")
        return section
    try:
        # Template schemas, made by host-collector itself (a warm-up round, not timed).
        template = f"{tag}_tpl"
        create_db(template)
        c = Collector(ctx, "collector-template", f"mysql://root@127.0.0.1:3306/{template}")
        c.post("warmup", 1, 2000)
        c.wait_persisted(2000)
        c.stop()
        sqlite_tpl = work / "template.db"
        c = Collector(ctx, "collector-sqlite-template", f"sqlite://{sqlite_tpl}")
        c.post("warmup", 1, 2000)
        c.wait_persisted(2000)
        c.stop()
        sqlite_schema = subprocess.run(["sqlite3", str(sqlite_tpl), ".schema mcp_gateway_log"],
                                       capture_output=True, text=True, check=True).stdout

        def mariadb_batched(rnd: int) -> float:
            db = f"{tag}_r{rnd}"
            created.append(db)
            mysql(f"DROP DATABASE IF EXISTS {db}")
            # The database does not exist yet: the collector queues, retrying every 10-20 ms.
            return batched_through_binary(ctx, f"batched-{rnd}", f"mysql://root@127.0.0.1:3306/{db}",
                                          lambda: mysql(f"CREATE DATABASE {db}"), n_batched)

        def mariadb_single(rnd: int) -> float:
            table = f"single_r{rnd}"
            mysql(f"CREATE TABLE {table} LIKE mcp_gateway_log", template)
            sql = "".join(f"INSERT IGNORE INTO {table} ({COLUMNS}) VALUES ("
                          + ", ".join(sql_literal(v) for v in row_values(f"single-{rnd}", s)) + ");\n"
                          for s in range(1, n_single + 1))
            seconds = timed(lambda: mysql(sql, template))  # autocommit: one commit per row
            count = int(mysql(f"SELECT COUNT(*) FROM {table}", template))
            assert count == n_single, (count, n_single)
            return n_single / seconds

        def mariadb_load_data(rnd: int) -> float:
            table = f"load_r{rnd}"
            mysql(f"CREATE TABLE {table} LIKE mcp_gateway_log", template)
            tsv = work / f"load-{rnd}.tsv"
            tsv.write_text("".join("\t".join(str(v) for v in row_values(f"load-{rnd}", s)) + "\n"
                                   for s in range(1, n_load + 1)))
            sql = f"LOAD DATA LOCAL INFILE '{tsv}' INTO TABLE {table} ({COLUMNS});"
            seconds = timed(lambda: mysql(sql, template, local_infile=True))
            count = int(mysql(f"SELECT COUNT(*) FROM {table}", template))
            assert count == n_load, (count, n_load)
            return n_load / seconds

        def sqlite_batched(rnd: int) -> float:
            # The directory does not exist yet: opening the database fails until it is created.
            d = work / f"sqlite-batched-{rnd}"
            return batched_through_binary(ctx, f"sqlite-batched-{rnd}", f"sqlite://{d}/collector.db",
                                          lambda: d.mkdir(), n_batched)

        def sqlite_cli(rnd: int, kind: str, n: int) -> float:
            db = work / f"sqlite-{kind}-{rnd}.db"
            # The collector's durability settings: WAL, synchronous=NORMAL.
            subprocess.run(["sqlite3", str(db)], input="PRAGMA journal_mode=WAL;\n" + sqlite_schema,
                           capture_output=True, text=True, check=True)
            rows = (row_values(f"{kind}-{rnd}", s) for s in range(1, n + 1))
            if kind == "import":
                # sqlite3's bulk path: .import (one prepared INSERT, one transaction) into a
                # staging table, then INSERT ... SELECT inside the engine. ASCII mode: unit and
                # record separators, no quoting, so the JSON goes through untouched.
                data = work / f"import-{rnd}.txt"
                data.write_text("".join("\x1f".join(str(v) for v in r) + "\x1e" for r in rows))
                sql = (f"PRAGMA synchronous=NORMAL;\nBEGIN;\nCREATE TABLE staging ({COLUMNS});\n"
                       f".import --ascii {data} staging\n"
                       f"INSERT OR IGNORE INTO mcp_gateway_log ({COLUMNS}) SELECT {COLUMNS} FROM staging;\n"
                       f"DROP TABLE staging;\nCOMMIT;\n")
            else:
                sql = "PRAGMA synchronous=NORMAL;\n" + "".join(
                    f"INSERT OR IGNORE INTO mcp_gateway_log ({COLUMNS}) VALUES ("
                    + ", ".join(sql_literal(v) for v in r) + ");\n" for r in rows)
            seconds = timed(lambda: subprocess.run(["sqlite3", "-bail", str(db)], input=sql, capture_output=True,
                                                   text=True, check=True, timeout=300))
            count = subprocess.run(["sqlite3", str(db), "SELECT COUNT(*) FROM mcp_gateway_log"],
                                   capture_output=True, text=True, check=True).stdout.strip()
            assert int(count) == n, (count, n)
            return n / seconds

        alternatives = [
            ("mariadb", "batched", "host-collector batched writer (multi-row INSERT IGNORE transactions)", mariadb_batched),
            ("mariadb", "single", "one autocommitted INSERT per event (MCPCAN's approach), mysql client", mariadb_single),
            ("mariadb", "load_data", "LOAD DATA LOCAL INFILE of the same rows (the database's own limit)", mariadb_load_data),
            ("sqlite", "batched", "host-collector batched writer (WAL, synchronous=NORMAL)", sqlite_batched),
            ("sqlite", "single", "one autocommitted INSERT per event, sqlite3 CLI (same pragmas)", lambda r: sqlite_cli(r, "single", n_single)),
            ("sqlite", "import", "sqlite3 .import of the same rows in one transaction (the database's own limit)", lambda r: sqlite_cli(r, "import", n_load)),
        ]
        results = {(db, k): [] for db, k, _, _ in alternatives}
        for rnd in range(cfg.rounds):
            if ctx["past_deadline"]():
                section["misses"].append(f"collector round {rnd + 1} skipped (deadline)")
                break
            shift = rnd % 3
            line = []
            for db in ("mariadb", "sqlite"):
                alts = [a for a in alternatives if a[0] == db]
                for _, key, _, fn in alts[shift:] + alts[:shift]:
                    v = fn(rnd)
                    results[(db, key)].append(v)
                    line.append(f"{db} {key} {v:.0f}")
            log(f"  round {rnd + 1}: " + " | ".join(line) + " rows/s")
        for db in ("mariadb", "sqlite"):
            base = median(results[(db, "batched")])
            for _, key, label, _ in (a for a in alternatives if a[0] == db):
                m = median(results[(db, key)])
                section[db][key] = {"label": label, "rows_per_s": m, "ratio_to_batched": ratio(m, base),
                                    "rounds": results[(db, key)],
                                    "rows": n_single if key == "single" else n_batched}
    finally:
        for name in created:
            try:
                mysql(f"DROP DATABASE IF EXISTS {name}")
            except Exception as e:  # noqa: BLE001
                section["misses"].append(f"could not drop database {name}: {e}")

    if ctx["past_deadline"]():
        section["misses"].append("collector-bench skipped (deadline)")
        return section
    # host-collector's own bench program: ingest, in-process writer, memory with the database down.
    started = time.monotonic()
    out = subprocess.run([str(ctx["bin"] / "collector-bench")], capture_output=True, text=True,
                         timeout=480, cwd=ROOT)
    section["collector_bench"] = parse_collector_bench(out.stdout)
    section["collector_bench"]["seconds"] = time.monotonic() - started
    section["collector_bench"]["output"] = out.stdout
    if out.returncode != 0:
        section["misses"].append(f"collector-bench failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    log(out.stdout.rstrip())
    return section


def parse_collector_bench(text: str) -> dict:
    res = {}
    m = re.search(r"batched (\d+) rows/s, one-per-event (\d+) rows/s, ratio ([\d.]+)x", text)
    if m:
        res["writer"] = {"batched_rows_per_s": int(m.group(1)), "single_rows_per_s": int(m.group(2))}
    m = re.search(r"\(median of (\d+)\): (\d+) events/s with 200-event requests, (\d+) events/s with 10-event", text)
    if m:
        res["ingest"] = {"rounds": int(m.group(1)), "events_per_s_200": int(m.group(2)),
                         "events_per_s_10": int(m.group(3))}
    m = re.search(r"no spool (\d+) events/s, spool (\d+) events/s \(([\d.]+)x\), spool \+ fsync (\d+) events/s "
                  r"\(([\d.]+)x\)", text)
    if m:
        res["spool"] = {"none": int(m.group(1)), "spool": int(m.group(2)), "spool_ratio": float(m.group(3)),
                        "fsync": int(m.group(4)), "fsync_ratio": float(m.group(5))}
    m = re.search(r"export off (\d+) events/s, export on (\d+) events/s \(([\d.]+)x\), dead endpoint (\d+) "
                  r"events/s \(([\d.]+)x\); spans exported while ingesting: (\d+) spans/s", text)
    if m:
        res["otlp"] = {"off": int(m.group(1)), "on": int(m.group(2)), "on_ratio": float(m.group(3)),
                       "dead": int(m.group(4)), "dead_ratio": float(m.group(5)),
                       "spans_per_s": int(m.group(6)),
                       "drops": re.findall(r"^  (export on.*)$", text, re.M)}
    m = re.search(r"full pipeline: (.*)", text)
    if m:
        res["pipeline"] = m.group(1)
    m = re.search(r"budget (\d+) MiB: idle RSS ([\d.]+) MiB, final RSS ([\d.]+) MiB, peak RSS ([\d.]+) MiB "
                  r"\(([\d.]+)x budget\); (\d+) events held, (\d+) dropped", text)
    if m:
        queue = [float(q) for q in re.findall(r"MiB sent: RSS [\d.]+ MiB, queue ([\d.]+) MiB", text)]
        res["memory"] = {"budget_mib": int(m.group(1)), "idle_rss_mib": float(m.group(2)),
                         "final_rss_mib": float(m.group(3)), "peak_rss_mib": float(m.group(4)),
                         "peak_over_budget": float(m.group(5)), "held": int(m.group(6)),
                         "dropped": int(m.group(7)), "max_queue_mib": max(queue) if queue else None}
    return res


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def fmt(v, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def fmt_ratio(v) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def fmt_us(v) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def fmt_signed(v) -> str:
    return "n/a" if v is None else f"{v:+,.0f}"


def fmt_signed_us(v) -> str:
    if v is None:
        return "n/a"
    return ("+" if v >= 0 else "−") + fmt_us(abs(v))


def report(results: dict) -> str:
    meta = results["meta"]
    a = meta["args"]
    out = [f"Run {meta['started']} on {meta['cpus']} CPUs (shared), commit {meta['commit']}; "
           f"{meta['envoy_version']}; load average {meta['loadavg_start']} at start, "
           f"{meta.get('loadavg_end', 'n/a')} at end; `make bench` measurement took "
           f"{meta.get('seconds', 0):.0f} s ({a['rounds']} rounds; wrk {a['seconds']} s for req/s and CPU, "
           f"{a['latency_seconds']} s for latency).", ""]
    sizes = meta.get("wasm_bytes", {})
    if sizes:
        out += ["Wasm files: " + ", ".join(f"`{k}` {fmt(v, ' bytes') if v is not None else 'missing'}"
                                          for k, v in sizes.items()) + ".", ""]
    ov = results.get("overhead")
    if ov:
        out += overhead_report(results, ov)
    fu = results.get("fuel")
    if fu:
        out += fuel_report(fu)
    co = results.get("collector")
    if co:
        out += ["### 3. Collector", ""]
        cb = co.get("collector_bench", {})
        if cb.get("ingest"):
            i = cb["ingest"]
            out += [f"Ingest over HTTP NDJSON into the binary (collector-bench, loopback, 4 connections, median of "
                    f"{i['rounds']}): **{i['events_per_s_200']:,} events/s** with 200-event requests, "
                    f"{i['events_per_s_10']:,} events/s with 10-event requests "
                    f"({fmt_ratio(i['events_per_s_200'] / i['events_per_s_10'])}).", ""]
        if cb.get("spool"):
            sp = cb["spool"]
            out += [f"Spool cost on ingest (200-event requests, database down, median of 5 interleaved rounds): "
                    f"no spool {sp['none']:,} events/s, spool {sp['spool']:,} events/s "
                    f"({fmt_ratio(sp['spool_ratio'])}), spool with fsync per request {sp['fsync']:,} events/s "
                    f"({fmt_ratio(sp['fsync_ratio'])}).", ""]
        if cb.get("otlp"):
            ot = cb["otlp"]
            out += [f"OTLP export cost on ingest (200-event `response` requests, database down, median of 5 "
                    f"interleaved rounds): export off {ot['off']:,} events/s, export on {ot['on']:,} events/s "
                    f"({fmt_ratio(ot['on_ratio'])}), export to a dead endpoint {ot['dead']:,} events/s "
                    f"({fmt_ratio(ot['dead_ratio'])}); **{ot['spans_per_s']:,} spans/s** exported while ingest ran. "
                    + "; ".join(ot["drops"]) + ".", ""]
        if co.get("mariadb"):
            out += [f"Persisted rows/s, ~450-byte `response` events, medians of {results['meta']['args']['rounds']} "
                    f"interleaved rounds. Batched: the host-collector binary's writer draining "
                    f"{results['meta']['args']['collector_rows']:,} queued events once the database appears.", "",
                    "| store | writer | rows | rows/s | ratio to batched |", "| --- | --- | ---: | ---: | ---: |"]
            for db in ("mariadb", "sqlite"):
                for key, r in co[db].items():
                    out.append(f"| {db} | {r['label']} | {r['rows']:,} | {fmt(r['rows_per_s'])} | "
                               f"{fmt_ratio(r['ratio_to_batched'])} |")
            out.append("")
        if cb.get("writer"):
            wr = cb["writer"]
            out += [f"collector-bench, in-process writer into MariaDB (median of 5): batched "
                    f"{wr['batched_rows_per_s']:,} rows/s vs one INSERT per event {wr['single_rows_per_s']:,} rows/s "
                    f"({fmt_ratio(wr['batched_rows_per_s'] / wr['single_rows_per_s'])})."]
        if cb.get("pipeline"):
            out += [f"collector-bench full pipeline: {cb['pipeline']}"]
        out.append("")
    mem = (co or {}).get("collector_bench", {}).get("memory")
    if mem or (fu or {}).get("memory"):
        out += ["### 4. Memory", "", "| what | measured | budget / cap | ratio | check |",
                "| --- | --- | ---: | ---: | --- |"]
    if mem:
        out.append(f"| host-collector peak RSS, database down, ~5.4x the budget sent ({mem['dropped']:,} events "
                   f"dropped oldest-first) | {mem['peak_rss_mib']:.1f} MiB (idle {mem['idle_rss_mib']:.1f}, queue "
                   f"max {fmt(mem['max_queue_mib'], ' MiB', 1)}) | {mem['budget_mib']} MiB queue budget | "
                   f"{mem['peak_over_budget']:.2f}x | {check_text(results, 'collector_rss')} |")
    for m in (fu or {}).get("memory", []):
        what = (f"filter linear memory, one VM, collector **{m['collector']}**, {m['requests']:,} json requests "
                f"({m['events_emitted']:,} events, {m['dropped_buffer_full']:,} dropped buffer_full)")
        out.append(f"| {what} | {m['memory_final_bytes'] / MIB:.2f} MiB (after load {m['memory_after_load_bytes'] / MIB:.2f}, "
                   f"growth {m['growth_over_load_bytes'] / MIB:.2f}) | {m['buffer_bytes'] / MIB:.0f} MiB buffer_bytes | "
                   f"{m['growth_over_cap']:.2f}x | {check_text(results, 'wasm_memory_' + str(m['buffer_bytes']) + '_' + m['collector'])} |")
    out.append("")
    out += ["### Checks", ""]
    for c in results["checks"]:
        out.append(f"- {'ok' if c['ok'] else '**MISS**'}: {c['what']}: {c['detail']}")
    return "\n".join(out) + "\n"


def overhead_report(results: dict, ov: dict) -> list[str]:
    a = results["meta"]["args"]
    pin = ov.get("pinning", {})
    plan = pin.get("plan")
    if plan:
        pinned_text = (f"Pinned with `taskset -c`: the gateway Envoy under test on CPU {plan['gateway']} "
                       f"(the 2-worker variants on CPUs {plan['gateway_2_workers']}), wrk, the upstream Envoy and "
                       f"host-collector on CPU {plan['others']}, the same for every variant. During each wrk run of a "
                       f"1-worker variant the collector is SCHED_IDLE (deployed, it has its own host): it writes "
                       f"in the CPU time wrk and the upstream leave idle instead of delaying them. After each run "
                       f"the bench waits until the collector has written that run's events, so no run shares "
                       f"CPU {plan['others']} with an earlier run's backlog; the collector's CPU per request "
                       f"(during the run and after it; CPU {plan['others']} is also wrk's and the upstream's) "
                       f"is the `collector CPU/req` column.")
    else:
        pinned_text = f"**Not pinned**: {pin.get('unpinned_reason', 'unknown')}."
    extra = ", ".join(ov.get("extra_workloads", [])) or "no workload"
    out = ["### 1. Filter overhead (Envoy, 1 worker unless stated)", "",
           f"Static upstream: a second Envoy answering with canned JSON-RPC responses (direct_response). "
           f"{pinned_text} **CPU/req** (the primary figure): the gateway Envoy's CPU time (from /proc) per "
           f"request under load. req/s: wrk, {a['connections']} connections, {a['seconds']} s; p50/p99: "
           f"1 connection, {a['latency_seconds']} s; medians of {a['rounds']} interleaved rounds (variants "
           f"rotated each round). Ratios (÷) and differences (+) are to the no-filter run (`none`) and to the "
           f"no-op wasm filter run (`noop`) of the same workload. The variants of our filter beyond the default "
           f"configuration run on {extra} only (time budget).", ""]
    for v, info in ov["variants"].items():
        if info.get("available", True):
            out.append(f"- `{v}`: {info['label']}")
    for v, info in ov["variants"].items():
        if not info.get("available", True):
            out.append(f"- `{v}` ({info['label']}): **not measured**: {info['reason']}")
    out += ["", "CPU and throughput (16 connections):", "",
            "| workload | variant | **CPU/req** | ÷ none | ÷ noop | + noop | req/s | ÷ none | ÷ noop | "
            "cores busy: gateway / load side | collector CPU/req | errors |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w in ov["workloads"]:
        for v, r in w["rows"].items():
            errs = f"{r['errors']}"
            if w["expected_status"] >= 400:
                errs += f" ({r['status_errors']} x {w['expected_status']}, expected)"
            elif r["status_errors"]:
                errs += f" + {r['status_errors']} bad status"
            out.append(f"| {w['name']} | {v} | **{fmt_us(r['envoy_cpu_us_per_req'])}** | "
                       f"{fmt_ratio(r['envoy_cpu_us_per_req_ratio'])} | {fmt_ratio(r['envoy_cpu_us_per_req_ratio_noop'])} | "
                       f"{fmt_signed_us(r['envoy_cpu_us_added_over_noop'])} | {fmt(r['rps'])} | "
                       f"{fmt_ratio(r['rps_ratio'])} | {fmt_ratio(r['rps_ratio_noop'])} | "
                       f"{fmt(r['gateway_cores'], '', 2)} / {fmt(r['load_side_cores'], '', 2)} | "
                       f"{fmt_us(r.get('collector_cpu_us_per_req'))} | {errs} |")
    out += ["", "Latency (1 connection):", "",
            "| workload | variant | p50 | ÷ none | ÷ noop | p99 | ÷ none | ÷ noop | + noop |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w in ov["workloads"]:
        for v, r in w["rows"].items():
            out.append(f"| {w['name']} | {v} | {fmt_us(r['p50_us'])} | {fmt_ratio(r['p50_us_ratio'])} | "
                       f"{fmt_ratio(r['p50_us_ratio_noop'])} | {fmt_us(r['p99_us'])} | {fmt_ratio(r['p99_us_ratio'])} | "
                       f"{fmt_ratio(r['p99_us_ratio_noop'])} | {fmt_signed_us(r['p99_us_added_over_noop'])} |")
    out += hostcall_table(ov, results)
    two = [(w, w["rows"].get(BREAKER_OFF), w["rows"].get(BREAKER_ON)) for w in ov["workloads"]
           if w["rows"].get(BREAKER_OFF) or w["rows"].get(BREAKER_ON)]
    if two:
        out += ["", f"2 Envoy workers (the gateway on both CPUs, wrk and the rest still on CPU "
                    f"{(plan or {}).get('others', '1')}): the circuit breaker's cost, its shared-data "
                    f"compare-and-swap contention between the workers (`mcp_filter_cas_retries`, "
                    f"`mcp_filter_cas_lost_updates`, summed over workers, measured runs only). Breaker off is the "
                    f"default configuration (no `upstream` key, so no health tracking either); breaker on adds "
                    f"`\"upstream\": {{}}`. Compare these two with each other, not with the 1-worker rows.", "",
                "| workload | variant | req/s | ÷ breaker off | CPU/req | cas_retries / 1,000 req | cas_lost_updates |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for w, off, on in two:
            for v, r in ((BREAKER_OFF, off), (BREAKER_ON, on)):
                if r is None:
                    continue
                out.append(f"| {w['name']} | {v} | {fmt(r['rps'])} | {fmt_ratio(ratio(r['rps'], (off or {}).get('rps')))} | "
                           f"{fmt_us(r['envoy_cpu_us_per_req'])} | {fmt(r['cas_retries_per_1k_req'], '', 2)} | "
                           f"{r['cas_lost_updates']:,} |")
    others = [r["other_cores"] for w in ov["workloads"] for r in w["rows"].values()]
    out += ["", f"Other load during these runs: median {fmt(median(others), ' cores', 2)} busy outside the benchmark."]
    procs = pin.get("processes", {})
    if procs:
        out.append("CPUs each process was allowed (read back from /proc): "
                   + "; ".join(f"{k} {v}" for k, v in procs.items()) + ".")
    out += [f"- {n}" for n in ov["notes"]]
    out += [f"- MISS: {m}" for m in ov.get("misses", [])]
    out.append("")
    return out


PHASE_NAMES = ("request_headers", "request_body", "response_headers", "response_body", "end")


def fuel_report(fu: dict) -> list[str]:
    out = ["### 2. Wasm cost (wasmtime fuel, deterministic)", "",
           f"`examples/wasm_fuel.rs` in the wasmtime test host, filter `{Path(fu['wasm']).name}` "
           f"({fu['wasm_bytes']:,} bytes), default configuration plus a collector. Lifecycle: request headers, "
           f"body, response headers, body, stream end (on_done/on_log/on_delete); shipping: ticks and batch "
           f"callouts to the collector, per request at 1000 req/s.", "",
           "| workload | lifecycle fuel | shipping fuel/request | total fuel/request | events/request |",
           "| --- | ---: | ---: | ---: | --- |"]
    for r in fu["fuel"]:
        events = ", ".join(f"{k}" + (f" x{v:g}" if v != 1 else "")
                           for k, v in r.get("events_shipped_per_request", {}).items())
        out.append(f"| {r['workload']} | {r['lifecycle_fuel_mean']:,} | {r['shipping_fuel_per_request']:,} | "
                   f"{r['total_fuel_per_request']:,} | {r['events_per_request']:g}: {events} |")
    if any(r.get("lifecycle_fuel_by_phase") for r in fu["fuel"]):
        out += ["", "Lifecycle fuel by phase (default configuration, mean per request):", "",
                "| workload | " + " | ".join(PHASE_NAMES) + " | lifecycle |",
                "| --- | " + " | ".join("---:" for _ in PHASE_NAMES) + " | ---: |"]
        for r in fu["fuel"]:
            ph = r.get("lifecycle_fuel_by_phase") or {}
            out.append(f"| {r['workload']} | " + " | ".join(fmt(ph.get(p)) for p in PHASE_NAMES)
                       + f" | {r['lifecycle_fuel_mean']:,} |")
    variants = {name: rows for name, rows in (fu.get("fuel_variants") or {}).items() if isinstance(rows, list)}
    if variants:
        base = {r["workload"]: r for r in fu["fuel"]}
        out += ["", "Configuration variants (`fuel_variants`; ÷ default: to the default configuration's row above):", "",
                "| variant | workload | lifecycle fuel | ÷ default | + default | shipping fuel/request | ÷ default | "
                "total fuel/request | events/request |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, rows in variants.items():
            for r in rows or []:
                b = base.get(r.get("workload"), {})
                out.append(f"| {name} | {r.get('workload')} | {fmt(r.get('lifecycle_fuel_mean'))} | "
                           f"{fmt_ratio(ratio(r.get('lifecycle_fuel_mean'), b.get('lifecycle_fuel_mean')))} | "
                           f"{fmt_signed(difference(r.get('lifecycle_fuel_mean'), b.get('lifecycle_fuel_mean')))} | "
                           f"{fmt(r.get('shipping_fuel_per_request'))} | "
                           f"{fmt_ratio(ratio(r.get('shipping_fuel_per_request'), b.get('shipping_fuel_per_request')))} | "
                           f"{fmt(r.get('total_fuel_per_request'))} | {fmt(r.get('events_per_request'), '', 2)} |")
        if any((r or {}).get("lifecycle_fuel_by_phase") for rows in variants.values() for r in rows or []):
            out += ["", "| variant | workload | " + " | ".join(PHASE_NAMES) + " |",
                    "| --- | --- | " + " | ".join("---:" for _ in PHASE_NAMES) + " |"]
            for name, rows in variants.items():
                for r in rows or []:
                    ph = r.get("lifecycle_fuel_by_phase") or {}
                    out.append(f"| {name} | {r.get('workload')} | " + " | ".join(fmt(ph.get(p)) for p in PHASE_NAMES) + " |")
    else:
        out += ["", "No configuration variants in this wasm_fuel output (`fuel_variants` absent)."]
    out.append("")
    return out


def check_text(results: dict, key: str) -> str:
    c = next((c for c in results["checks"] if c.get("key") == key), None)
    return "n/a" if c is None else ("ok" if c["ok"] else "**MISS**")


def hostcall_costs(ov: dict) -> dict:
    """Per host call: CPU per request over the no-op filter, divided by the calls made."""
    costs = {}
    for call in HOSTCALLS:
        row = overhead_row(ov, "json", "hostcall-" + call)
        added = (row or {}).get("envoy_cpu_us_added_over_noop")
        if added is not None:
            costs[call] = added / CALIBRATION_CALLS
    return costs


# The proxy-wasm ABI names of the fuel section's host-call counts, by calibrated call.
ABI_NAMES = {"proxy_get_current_time_nanoseconds": "get_current_time", "proxy_get_property": "get_property",
             "proxy_get_header_map_pairs": "get_header_map_pairs",
             "proxy_get_header_map_value": "get_header_map_value",
             "proxy_replace_header_map_value": "replace_header_map_value",
             "proxy_add_header_map_value": "replace_header_map_value",
             "proxy_get_buffer_bytes": "get_buffer_bytes"}


def hostcall_table(ov: dict, results: dict) -> list[str]:
    costs = hostcall_costs(ov)
    if not costs:
        return []
    out = ["", f"Host call cost (calibration: bench/hostcall-filter, the no-op filter plus {CALIBRATION_CALLS} "
               f"calls of one host call per `json` request, against `noop` in the same run; per call = "
               f"CPU/req over noop ÷ {CALIBRATION_CALLS}). Calls that return bytes (properties, headers, "
               f"bodies) make Envoy allocate them inside the VM, a call back into wasm; a call that returns "
               f"a number does not.", "",
           "| host call | CPU/req | + noop | per call |", "| --- | ---: | ---: | ---: |"]
    for call, per_call in costs.items():
        r = overhead_row(ov, "json", "hostcall-" + call)
        out.append(f"| `{call}` | {fmt_us(r['envoy_cpu_us_per_req'])} | "
                   f"{fmt_signed_us(r['envoy_cpu_us_added_over_noop'])} | {per_call:.2f} µs |")
    fuel = next((f for f in (results.get("fuel") or {}).get("fuel", []) if f.get("workload") == "json"), None)
    calls = (fuel or {}).get("lifecycle_hostcalls") or {}
    priced = [(n, count, costs.get(ABI_NAMES.get(n, ""))) for n, count in sorted(calls.items())]
    if priced and all(cost is not None for _, _, cost in priced):
        total = sum(count * cost for _, count, cost in priced)
        ours = overhead_row(ov, "json", "wasm-v8")
        added = (ours or {}).get("envoy_cpu_us_added_over_noop")
        out += ["", "Our filter's `json` lifecycle at these prices: " + ", ".join(
            f"{count:g} x `{n}`" for n, count, _ in priced) + f" = **{total:.1f} µs** of its "
            + (f"+{added:.1f} µs over noop" if added is not None else "cost (wasm-v8 not measured)")
            + " (the rest: running its wasm, the events and their shipping)."]
    return out


def overhead_row(ov: dict, workload: str, variant: str) -> dict | None:
    w = next((w for w in ov.get("workloads", []) if w["name"] == workload), None)
    return (w or {}).get("rows", {}).get(variant)


def checks(results: dict) -> list[dict]:
    out = []

    def add(key, what, ok, detail):
        out.append({"key": key, "what": what, "ok": bool(ok), "detail": detail})

    def not_measured(*names):
        return "not measured (" + ", ".join(n for n in names) + " missing from this run)"

    ov = results.get("overhead")
    if ov:
        pin = ov.get("pinning", {})
        add("pinned", "gateway Envoy pinned to its own CPU, everything else to the other", pin.get("plan") is not None,
            "gateway " + str((pin.get("plan") or {}).get("gateway")) + ", others " + str((pin.get("plan") or {}).get("others"))
            if pin.get("plan") else pin.get("unpinned_reason", "not pinned"))
        for v, info in ov["variants"].items():
            if not info.get("available", True):
                add("variant_" + v, f"{v} measured", False, info["reason"])
        # Socket errors or timeouts anywhere, or a status other than the workload's (wrk counts
        # every status >= 400 as a status error, so the 400 workload must have them all).
        bad = [(w["name"], v, r["errors"], r["status_errors"]) for w in ov["workloads"] for v, r in w["rows"].items()
               if r["errors"] or r["status_errors"] != (r["all_requests"] if w["expected_status"] >= 400 else 0)]
        add("overhead_errors", "no failed requests in the Envoy runs", not bad,
            "none" if not bad else f"{bad}")
        for v, info in ov["variants"].items():
            ev = info.get("events")
            if ev:
                lost = ev["emitted"] - ev["shipped"] - sum(ev["dropped"].values())
                add("events_" + v, f"{v}: filter events shipped to the collector, none dropped",
                    lost == 0 and sum(ev["dropped"].values()) == 0,
                    f"emitted {ev['emitted']}, shipped {ev['shipped']}, dropped {ev['dropped']}, "
                    f"still buffered {lost}")
        # Pinned processes cannot move away from another build on their CPU: then p99 (and less so
        # req/s) measures the scheduler, while CPU per request mostly holds.
        others = median([r["other_cores"] for w in ov["workloads"] for r in w["rows"].values()])
        if others is not None:
            add("quiet", f"machine quiet during the Envoy runs (other processes <= {QUIET_CORES} cores, median)",
                others <= QUIET_CORES, f"{others:.2f} cores busy outside the benchmark"
                + ("" if others <= QUIET_CORES else "; p99 and req/s are disturbed, CPU/req much less: rerun on a "
                                                    "quiet machine before reading the latency checks"))
        lost_rounds = [m for m in ov.get("misses", []) if "skipped" in m or "failed" in m or "exited" in m]
        if lost_rounds:
            add("overhead_rounds", "all Envoy rounds ran", False, "; ".join(lost_rounds))

        # Issue 14 figures: our filter (default configuration) against the no-op wasm filter, as
        # deployed (shipping to host-collector, which shares CPU 1 with wrk) and shipping to a
        # sink (what the filter itself costs the traffic, the collector's writes aside).
        for variant, suffix in (("wasm-v8", ""), (SINK, "_sink")):
            if variant == SINK and not any(SINK in w["rows"] for w in ov["workloads"]):
                continue
            tag = f"ours ({variant})"
            for wl, target, goal in (("json", 0.90, 0.95), ("sse", 0.80, None), ("batch", 0.80, None)):
                ours, noop = overhead_row(ov, wl, variant), overhead_row(ov, wl, "noop")
                what = f"{wl}: req/s of {tag} >= {target:.2f}x the no-op filter" + (
                    f" (goal {goal:.2f}x)" if goal else "")
                if not ours or not noop:
                    add(f"rps_vs_noop_{wl}{suffix}", what, False, not_measured(variant if not ours else "noop"))
                    continue
                r = ratio(ours["rps"], noop["rps"])
                detail = f"{ours['rps']:,.0f} vs {noop['rps']:,.0f} req/s = {fmt_ratio(r)}"
                if goal:
                    detail += f"; goal {goal:.2f}x {'met' if r >= goal else 'not met'}"
                add(f"rps_vs_noop_{wl}{suffix}", what, r >= target, detail)
            ours, noop = overhead_row(ov, "json", variant), overhead_row(ov, "json", "noop")
            what_cpu = f"json: gateway CPU/request of {tag} added over the no-op filter <= 15 µs"
            what_p99 = f"json: p99 with one connection of {tag} <= the no-op filter's + 0.5 ms"
            if ours and noop:
                added = ours["envoy_cpu_us_added_over_noop"]
                detail = (f"{ours['envoy_cpu_us_per_req']:.1f} µs vs {noop['envoy_cpu_us_per_req']:.1f} µs "
                          f"= {added:+.1f} µs")
                floor = overhead_row(ov, "json", "abi-floor")
                if floor:
                    # What the job's host calls and holds cost by themselves, without our logic.
                    floor_added = floor["envoy_cpu_us_added_over_noop"]
                    detail += (f" (the ABI floor, abi-floor: {floor_added:+.1f} µs; ours above it: "
                               f"{added - floor_added:+.1f} µs)")
                add(f"cpu_added_json{suffix}", what_cpu, added <= CPU_ADDED_US, detail)
                added = ours["p99_us_added_over_noop"]
                add(f"p99_json{suffix}", what_p99, added <= P99_ADDED_US,
                    f"{fmt_us(ours['p99_us'])} vs {fmt_us(noop['p99_us'])} = {fmt_signed_us(added)}")
            else:
                missing = variant if not ours else "noop"
                add(f"cpu_added_json{suffix}", what_cpu, False, not_measured(missing))
                add(f"p99_json{suffix}", what_p99, False, not_measured(missing))
        pairs = [(w["name"], w["rows"].get(BREAKER_OFF), w["rows"].get(BREAKER_ON)) for w in ov["workloads"]]
        pairs = [p for p in pairs if p[1] or p[2]]
        what = f"2 workers: req/s with the breaker on >= {BREAKER_RPS_RATIO:.2f}x breaker off"
        if not pairs:
            add("breaker_2w", what, False, not_measured(BREAKER_OFF, BREAKER_ON))
        for wl, off, on in pairs:
            if not off or not on:
                add(f"breaker_2w_{wl}", f"{wl}: {what}", False, not_measured(BREAKER_OFF if not off else BREAKER_ON))
                continue
            r = ratio(on["rps"], off["rps"])
            add(f"breaker_2w_{wl}", f"{wl}: {what}", r >= BREAKER_RPS_RATIO,
                f"{on['rps']:,.0f} vs {off['rps']:,.0f} req/s = {fmt_ratio(r)}; cas_retries "
                f"{on['cas_retries_per_1k_req']:.2f} per 1,000 requests ({on['cas_retries']:,} in "
                f"{on['all_requests']:,}), cas_lost_updates {on['cas_lost_updates']:,}")
    fu = results.get("fuel")
    if fu:
        for m in fu["memory"]:
            key = f"wasm_memory_{m['buffer_bytes']}_{m['collector']}"
            if m["collector"] == "down":
                ok = m["growth_over_cap"] <= WASM_GROWTH_OVER_CAP and m["first_drop_after_requests"] is not None \
                    and m["memory_final_bytes"] == m["memory_at_2x_fill_bytes"]
                add(key, f"filter memory bounded with the collector down (buffer_bytes {m['buffer_bytes'] // MIB} MiB)", ok,
                    f"growth {m['growth_over_load_bytes'] / MIB:.2f} MiB = {m['growth_over_cap']:.2f}x the cap "
                    f"(target <= {WASM_GROWTH_OVER_CAP}x); buffer full after {m['first_drop_after_requests']} requests; "
                    f"memory {(m['memory_at_2x_fill_bytes'] or 0) / MIB:.2f} MiB at 2x that, {m['memory_final_bytes'] / MIB:.2f} MiB "
                    f"at 3x (target: no growth)")
            else:
                add(key, "filter memory steady with the collector up", m["dropped_buffer_full"] == 0,
                    f"{m['memory_final_bytes'] / MIB:.2f} MiB after {m['requests']:,} requests, nothing dropped")
        rows = {r["workload"]: r for r in fu["fuel"]}
        for wl, limit in LIFECYCLE_FUEL.items():
            what = f"{wl}: wasm fuel per request lifecycle <= {limit:,}"
            r = rows.get(wl)
            if r is None:
                add(f"fuel_{wl}", what, False, "workload missing from the wasm_fuel output")
                continue
            ph = r.get("lifecycle_fuel_by_phase") or {}
            add(f"fuel_{wl}", what, r["lifecycle_fuel_mean"] <= limit,
                f"{r['lifecycle_fuel_mean']:,} ({r['lifecycle_fuel_mean'] / limit:.1f}x the target)"
                + (" = " + " + ".join(f"{p} {ph[p]:,}" for p in PHASE_NAMES if p in ph) if ph else ""))
        r = rows.get("json")
        if r is not None:
            add("fuel_shipping", f"json: shipping fuel per request <= {SHIPPING_FUEL:,}",
                r["shipping_fuel_per_request"] <= SHIPPING_FUEL,
                f"{r['shipping_fuel_per_request']:,} (other workloads, for reference: "
                + ", ".join(f"{k} {v['shipping_fuel_per_request']:,}" for k, v in rows.items() if k != "json") + ")")
        trapped = [r["workload"] for r in fu["fuel"] if r["trapped"]]
        trapped += [f"{name}/{r.get('workload')}" for name, vrows in (fu.get("fuel_variants") or {}).items()
                    if isinstance(vrows, list) for r in vrows if r.get("trapped")]
        add("fuel_traps", "no trap in the fuel runs", not trapped, "none" if not trapped else str(trapped))
    co = results.get("collector")
    if co:
        for m in co.get("misses", []):
            add("collector_" + m[:20], "collector section complete", False, m)
        mem = co.get("collector_bench", {}).get("memory")
        if mem:
            add("collector_rss", "host-collector RSS within budget under a flood with the database down",
                mem["peak_over_budget"] <= COLLECTOR_RSS_OVER_BUDGET
                and (mem["max_queue_mib"] or 0) <= mem["budget_mib"],
                f"peak RSS {mem['peak_rss_mib']:.1f} MiB = {mem['peak_over_budget']:.2f}x the {mem['budget_mib']} MiB "
                f"queue budget (target <= {COLLECTOR_RSS_OVER_BUDGET}x); queue max {mem['max_queue_mib']} MiB")
        elif co.get("collector_bench") is not None:
            add("collector_rss", "host-collector memory measured", False, "collector-bench printed no memory figures")
        maria = co.get("mariadb", {})
        if maria.get("batched") and maria.get("single"):
            add("batched_beats_single", "batched writer faster than one INSERT per event (MariaDB)",
                (maria["single"]["ratio_to_batched"] or 1) < 1,
                f"one INSERT per event at {fmt_ratio(maria['single']['ratio_to_batched'])} of the batched rate")
    total = results["meta"].get("total_seconds")
    if total is not None:
        add("duration", "make bench under 15 minutes", total <= TOTAL_BUDGET_S,
            f"{total:.0f} s from the start of `make bench`, builds included ({results['meta'].get('seconds', 0):.0f} s measuring)")
    return out


README_BEGIN = "<!-- bench:begin (written by `make bench`) -->"
README_END = "<!-- bench:end -->"


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        log("README.md has no bench markers: not updated")
        return
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + README_BEGIN + "\n" + table + README_END + tail)
    log("README.md: Benchmarks section updated")


def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "host-collector", "bench/noop-filter",
                                "Cargo.lock"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def main() -> int:
    global WORKLOADS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    p.add_argument("--envoy", default=os.environ.get("ENVOY_BIN", str(ROOT / ".venv/bin/envoy")))
    p.add_argument("--only", default="fuel,overhead,collector", help="comma-separated sections")
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 5)))
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--seconds", type=int, default=2, help="wrk seconds per load run (req/s, CPU/request)")
    p.add_argument("--latency-seconds", type=int, default=2, help="wrk seconds per 1-connection run (p50/p99)")
    p.add_argument("--collector-rows", type=int, default=30000)
    p.add_argument("--single-rows", type=int, default=1000)
    p.add_argument("--variants", default="all",
                   help="comma-separated overhead variants to run (default all): " + ", ".join(VARIANTS))
    p.add_argument("--extra-workloads", default="json",
                   help="workloads that also run the extra variants of our filter (upstream, all levels, "
                        "2 workers): comma-separated names or `all` (default json)")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the processes to CPUs (taskset), for comparison")
    p.add_argument("--readme", action="store_true", help="replace the Benchmarks block of README.md")
    p.add_argument("--out", default=str(BENCH), help="directory for results.md and results.json")
    p.add_argument("--started-at", type=float, default=None,
                   help="epoch seconds when `make bench` started (to include the build time)")
    p.add_argument("--calibrate", action="store_true",
                   help="also run the host-call calibration variants (bench/hostcall-filter) on json")
    p.add_argument("--try", dest="experiments", action="append", default=[], metavar="NAME=JSON",
                   help="an experimental variant of our filter answered by the sink, with JSON added to its "
                        "plugin configuration (repeatable; runs on the extra workloads), e.g. "
                        "--try quiet='{\"min_level\":\"error\"}'; `floor:NAME=JSON` the same on the ABI "
                        "floor (bench/hostcall-filter `lifecycle`), e.g. --try floor:noprop='{\"skip\":\"property\"}'")
    p.add_argument("--workloads", default="all",
                   help="comma-separated overhead workloads to run (default all): "
                        + ", ".join(w["name"] for w in WORKLOADS))
    args = p.parse_args()
    if args.workloads != "all":
        WORKLOADS = [w for w in WORKLOADS if w["name"] in args.workloads.split(",")]
    for experiment in args.experiments:
        name, _, plugin = experiment.partition("=")
        module = "ours"
        if name.startswith("floor:"):
            # An experiment on the ABI floor (bench/hostcall-filter `lifecycle`) instead of ours.
            name, module = name.removeprefix("floor:"), "hostcall"
        try:
            plugin = json.loads(plugin)
        except json.JSONDecodeError as e:
            log(f"error: --try {name}: the plugin configuration is not JSON: {e}")
            return 2
        if module == "hostcall":
            plugin = {"hostcall": "lifecycle"} | plugin
        VARIANTS["try-" + name] = {"label": f"experiment: {module} with the sink, + `{json.dumps(plugin)}`",
                                   "kind": "wasm", "sink": True, "plugin": plugin, "extra": True,
                                   "module": module}
        if args.variants != "all":
            args.variants += ",try-" + name

    target = Path(args.target_dir)
    if not target.is_absolute():
        target = ROOT / target
    started = time.monotonic()
    ctx = {
        "args": args,
        "envoy": args.envoy,
        "bin": target / "release",
        "fuel_bin": target / "debug/examples/wasm_fuel",
        "wasm": target / "wasm32-wasip1/wasm/mcp_filter.wasm",
        "wasm_files": {"ours": target / "wasm32-wasip1/wasm/mcp_filter.wasm",
                       "hostcall": target / "wasm32-wasip1/wasm/hostcall_filter.wasm",
                       "noop": target / "wasm32-wasip1/wasm/noop_filter.wasm"},
        "past_deadline": lambda: time.monotonic() - started > DEADLINE_S,
    }
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [v for v in args.variants.split(",") if args.variants != "all" and v not in VARIANTS]
    if unknown:
        log(f"error: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
        return 2
    need = {"wrk": "overhead", "mysql": "collector", "sqlite3": "collector"}
    for tool, sec in need.items():
        if sec in sections and not shutil.which(tool):
            log(f"error: `{tool}` not found (needed by the {sec} section)")
            return 2
    # What each section cannot run without (a missing wasm module only makes its variants
    # unavailable in the overhead section, reported as such).
    need_files = {"fuel": [ctx["wasm"], ctx["fuel_bin"]], "overhead": [ctx["bin"] / "host-collector"],
                  "collector": [ctx["bin"] / "host-collector", ctx["bin"] / "collector-bench"]}
    for sec in sections:
        for path in need_files.get(sec, []):
            if not path.exists():
                log(f"error: {path} missing: run `make bench` (it builds everything first)")
                return 2
    envoy_version = subprocess.run([args.envoy, "--version"], capture_output=True, text=True).stdout.strip()
    results = {"meta": {
        "started": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": os.cpu_count(),
        "commit": git_commit(),
        "envoy_version": "Envoy " + (envoy_version.split("version: ")[-1] or "?"),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "args": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "wasm_bytes": {path.name: (path.stat().st_size if path.exists() else None)
                       for path in ctx["wasm_files"].values()},
    }}
    log(f"== make bench: {results['meta']['started']}, {results['meta']['cpus']} CPUs, load average "
        f"{results['meta']['loadavg_start']}, {results['meta']['envoy_version']}")
    with tempfile.TemporaryDirectory(prefix="mcp-bench-") as tmp:
        ctx["workdir"] = Path(tmp)
        for name, fn in (("fuel", bench_fuel), ("overhead", bench_overhead), ("collector", bench_collector)):
            if name not in sections:
                continue
            t = time.monotonic()
            log(f"== {name} (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
            try:
                results[name] = fn(ctx)
            except Exception as e:  # noqa: BLE001 - a failed section is reported, the others still run
                log(f"  {name} FAILED: {e}")
                results.setdefault("failures", []).append(f"{name}: {e}")
            log(f"   {name}: {time.monotonic() - t:.0f} s")
    results["meta"]["seconds"] = time.monotonic() - started
    results["meta"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.started_at:
        results["meta"]["total_seconds"] = time.time() - args.started_at
    results["checks"] = checks(results)
    for f in results.get("failures", []):
        results["checks"].append({"key": "failure", "what": "section ran", "ok": False, "detail": f})
    table = report(results)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text("## Benchmark results\n\n" + table)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    log("\n" + table)
    log(f"written: {out_dir / 'results.md'}, {out_dir / 'results.json'}")
    if args.readme:
        update_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
