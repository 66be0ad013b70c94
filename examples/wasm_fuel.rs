//! Wasm cost of the filter, measured in the wasmtime test host (tests/wasm-host), where it is
//! deterministic: fixed clock, seeded randomness, fuel (≈ wasm instructions) metered per call.
//! Part of `make bench` (bench/run.py); run alone with
//!
//!   cargo run --example wasm_fuel -- [path/to/mcp_filter.wasm]
//!
//! (`FUEL_FLAT_COPIES=1` charges `memory.copy` / `memory.fill` as one instruction instead of one
//! unit per byte: the difference from a default run is the bytes the filter moves.)
//!
//! Prints one JSON document on stdout:
//!
//! * `fuel`: per workload of bench/workloads.json (the same requests and responses as the Envoy
//!   benchmark), the fuel of one request lifecycle (request headers, body, response headers,
//!   body, on_done/on_log/on_delete) and the fuel of shipping its events to the collector
//!   (ticks, batch callouts and their responses), amortised per request at 1000 requests/s;
//!   and the host calls of one lifecycle by name (each crosses the wasm boundary).
//! * `memory`: the linear memory of one VM while the collector is down (every batch callout
//!   fails), against the event buffer cap `collector.buffer_bytes`, with the collector up as a
//!   reference. Linear memory never shrinks, so the last sample is the peak.

mod support;

use proxy_wasm_test_host::{Vm, World};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{default_wasm, lifecycle, load, plugin_config, workloads, Result, Workload, PHASES};

/// Requests measured per workload (after the warm-up); the figures are exact means.
const MEASURED: u64 = 200;
const WARMUP: u64 = 20;
/// Simulated request rate: the clock advances 1 ms per request and the root context ticks every
/// 100 requests, as Envoy's 100 ms tick would at 1000 requests/s.
const TICK_EVERY: u64 = 100;

fn events_in(body: &[u8]) -> usize {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.contains(r#""kind":"status""#))
        .count()
}

/// Event names in a batch body, counted into `names`.
fn count_events(body: &[u8], names: &mut BTreeMap<String, u64>) {
    for line in String::from_utf8_lossy(body).lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(name) = v["event"].as_str() {
                *names.entry(name.to_string()).or_default() += 1;
            }
        }
    }
}

/// Answers every pending batch callout: accepted (collector up) or failed (collector down).
fn answer_callouts(
    vm: &mut Vm,
    up: bool,
    names: Option<&mut BTreeMap<String, u64>>,
) -> Result<usize> {
    let mut names = names;
    let mut answered = 0;
    // Each answer may send the next batch at once, as Envoy would: answer until none is left.
    for _ in 0..10_000 {
        let calls = vm.pending_http_calls();
        if calls.is_empty() {
            break;
        }
        for call in &calls {
            if let Some(names) = names.as_deref_mut() {
                count_events(&call.body, names);
            }
            if up {
                let n = events_in(&call.body);
                let body = format!(r#"{{"accepted":{n},"rejected":[],"duplicates":0}}"#);
                vm.http_call_response(
                    call.token,
                    200,
                    &[("content-type", "application/json")],
                    body.as_bytes(),
                )?;
            } else {
                vm.http_call_failure(call.token)?;
            }
            answered += 1;
        }
    }
    Ok(answered)
}

/// Runs the root context's tick, answers the callouts it made (and those the answers made),
/// then advances the clock by 1 ms.
fn tick(
    vm: &mut Vm,
    world: &World,
    up: bool,
    names: Option<&mut BTreeMap<String, u64>>,
) -> Result<usize> {
    vm.tick()?;
    let n = answer_callouts(vm, up, names)?;
    world.advance(Duration::from_millis(1));
    Ok(n)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Fuel of `w` under the default configuration plus `top_extra` (top-level plugin fields).
fn fuel(wasm: &Path, w: &Workload, top_extra: &str) -> Result<Value> {
    let world = World::new();
    let mut vm = load(&world, wasm, &plugin_config(top_extra, ""))?;
    let mut n = 0u64;
    let step = |vm: &mut Vm, n: &mut u64| -> Result<(u64, [u64; 5])> {
        vm.reset_fuel();
        let phases = lifecycle(vm, w)?;
        let used = vm.fuel_consumed();
        *n += 1;
        world.advance(Duration::from_millis(1));
        Ok((used, phases))
    };
    for _ in 0..WARMUP {
        step(&mut vm, &mut n)?;
        if n % TICK_EVERY == 0 {
            tick(&mut vm, &world, true, None)?;
        }
    }
    // Ship everything from the warm-up, so the measured batches hold only measured events.
    for _ in 0..20 {
        world.advance(Duration::from_millis(100));
        tick(&mut vm, &world, true, None)?;
    }
    let mut names = BTreeMap::new();
    let emitted_before = world.counter("mcp_filter_events_emitted").unwrap_or(0);
    let (mut per_request, mut shipping, mut callouts) = (Vec::new(), 0u64, 0usize);
    let mut phase_totals = [0u64; 5];
    let mut hostcalls: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..MEASURED {
        let calls_before = vm.hostcall_counts().clone();
        let (used, phases) = step(&mut vm, &mut n)?;
        for (name, count) in vm.hostcall_counts() {
            *hostcalls.entry(name.clone()).or_default() +=
                count - calls_before.get(name).copied().unwrap_or(0);
        }
        per_request.push(used);
        for (total, phase) in phase_totals.iter_mut().zip(phases) {
            *total += phase;
        }
        if (i + 1) % TICK_EVERY == 0 {
            vm.reset_fuel();
            callouts += tick(&mut vm, &world, true, Some(&mut names))?;
            shipping += vm.fuel_consumed();
        }
    }
    // Flush what is left by age, so every measured event's shipping is paid for.
    for _ in 0..20 {
        world.advance(Duration::from_millis(100));
        vm.reset_fuel();
        callouts += tick(&mut vm, &world, true, Some(&mut names))?;
        shipping += vm.fuel_consumed();
    }
    let emitted = world.counter("mcp_filter_events_emitted").unwrap_or(0) - emitted_before;
    let lifecycle_total: u64 = per_request.iter().sum();
    let mean = lifecycle_total / MEASURED;
    let ship = shipping / MEASURED;
    Ok(json!({
        "workload": w.name,
        "requests": MEASURED,
        "events_per_request": emitted as f64 / MEASURED as f64,
        "events_shipped_per_request": names
            .iter()
            .map(|(k, v)| (k.clone(), json!(*v as f64 / MEASURED as f64)))
            .collect::<serde_json::Map<String, Value>>(),
        "lifecycle_fuel_mean": mean,
        "lifecycle_fuel_median": median(per_request.clone()),
        "lifecycle_fuel_min": per_request.iter().min(),
        "lifecycle_fuel_max": per_request.iter().max(),
        "lifecycle_fuel_by_phase": PHASES
            .iter()
            .zip(phase_totals)
            .map(|(name, total)| (name.to_string(), json!(total / MEASURED)))
            .collect::<serde_json::Map<String, Value>>(),
        "lifecycle_hostcalls": hostcalls
            .iter()
            .filter(|(_, total)| **total > 0)
            .map(|(k, total)| (k.clone(), json!(*total as f64 / MEASURED as f64)))
            .collect::<serde_json::Map<String, Value>>(),
        "lifecycle_hostcalls_total": hostcalls.values().sum::<u64>() as f64 / MEASURED as f64,
        "shipping_fuel_per_request": ship,
        "total_fuel_per_request": mean + ship,
        "batches": callouts,
        "shipped": world.counter("mcp_filter_events_shipped").unwrap_or(0),
        "trapped": vm.trapped(),
    }))
}

/// Memory of one VM under steady traffic, collector down (or up, as a reference).
fn memory(wasm: &Path, w: &Workload, buffer_bytes: u64, up: bool) -> Result<Value> {
    let world = World::new();
    let extra = format!(r#", "buffer_bytes": {buffer_bytes}"#);
    let mut vm = load(&world, wasm, &plugin_config("", &extra))?;
    let loaded = vm.memory_size();
    let mut requests = 0u64;
    let mut samples = Vec::new();
    let mut first_drop_at: Option<u64> = None;
    let mut memory_at_first_drop = 0usize;
    // Memory once twice as many requests as it took to fill the buffer have run: from there to
    // the end (3x) it must not grow.
    let mut memory_at_2x: Option<usize> = None;
    let mut peak_buffer = 0i64;
    // Collector down: 3x the requests it took to fill the buffer (at least 6000), never more
    // than 200k.
    loop {
        for _ in 0..TICK_EVERY {
            lifecycle(&mut vm, w)?;
            world.advance(Duration::from_millis(1));
            requests += 1;
        }
        tick(&mut vm, &world, up, None)?;
        peak_buffer = peak_buffer.max(world.gauge("mcp_filter_buffer_bytes").unwrap_or(0));
        let dropped = world
            .counter("mcp_filter_events_dropped_buffer_full")
            .unwrap_or(0);
        if dropped > 0 && first_drop_at.is_none() {
            first_drop_at = Some(requests);
            memory_at_first_drop = vm.memory_size();
        }
        if requests % 2000 == 0 {
            samples.push(json!({"requests": requests, "memory_bytes": vm.memory_size()}));
        }
        if let Some(at) = first_drop_at {
            if memory_at_2x.is_none() && requests >= 2 * at.max(2000) {
                memory_at_2x = Some(vm.memory_size());
            }
        }
        let enough = match first_drop_at {
            Some(at) => requests >= 3 * at.max(2000),
            // Collector up: nothing accumulates; 10k requests show the steady state.
            None => up && requests >= 10_000,
        };
        if enough || requests >= 200_000 {
            break;
        }
    }
    let final_memory = vm.memory_size();
    let emitted = world.counter("mcp_filter_events_emitted").unwrap_or(0);
    Ok(json!({
        "workload": w.name,
        "collector": if up { "up" } else { "down" },
        "buffer_bytes": buffer_bytes,
        "requests": requests,
        "events_emitted": emitted,
        "events_shipped": world.counter("mcp_filter_events_shipped").unwrap_or(0),
        "dropped_buffer_full": world.counter("mcp_filter_events_dropped_buffer_full").unwrap_or(0),
        "dropped_callout_failed": world.counter("mcp_filter_events_dropped_callout_failed").unwrap_or(0),
        "first_drop_after_requests": first_drop_at,
        "peak_buffer_gauge_bytes": peak_buffer,
        "memory_after_load_bytes": loaded,
        "memory_at_first_drop_bytes": memory_at_first_drop,
        "memory_at_2x_fill_bytes": memory_at_2x,
        "memory_final_bytes": final_memory,
        "growth_over_load_bytes": final_memory - loaded,
        "growth_over_cap": (final_memory - loaded) as f64 / buffer_bytes as f64,
        "samples": samples,
        "trapped": vm.trapped(),
    }))
}

fn main() -> Result<()> {
    let wasm = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(default_wasm);
    let bytes = std::fs::metadata(&wasm)
        .map_err(|e| format!("{}: {e} (run `make wasm` first)", wasm.display()))?
        .len();
    let workloads = workloads()?;
    let mut fuel_rows = Vec::new();
    for w in &workloads {
        fuel_rows.push(fuel(&wasm, w, "")?);
    }
    // The same workloads with every event level on, with upstream health + breaker on, and
    // with no event at or below `info` (what writing the events costs).
    let mut variants = serde_json::Map::new();
    for (name, top_extra) in [
        ("all_levels", r#""min_level": "debug", "#),
        ("upstream", r#""upstream": {}, "#),
        ("no_events", r#""min_level": "error", "#),
    ] {
        let rows = workloads
            .iter()
            .map(|w| fuel(&wasm, w, top_extra))
            .collect::<Result<Vec<_>>>()?;
        variants.insert(name.to_string(), json!(rows));
    }
    let json_workload = &workloads[0];
    let mut memory_rows = Vec::new();
    for (cap, up) in [(1u64 << 20, false), (8 << 20, false), (8 << 20, true)] {
        memory_rows.push(memory(&wasm, json_workload, cap, up)?);
    }
    let out = json!({
        "wasm": wasm.display().to_string(),
        "wasm_bytes": bytes,
        "tick_every_requests": TICK_EVERY,
        "fuel": fuel_rows,
        "fuel_variants": variants,
        "memory": memory_rows,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
