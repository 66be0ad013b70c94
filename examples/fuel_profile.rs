//! Where the filter's wasm instructions go: a deterministic profile of one request lifecycle
//! in the wasmtime test host. The test host meters fuel per call and the filter is
//! deterministic (fixed clock, seeded randomness), so running a phase with a fuel limit of
//! `n` stops it at exactly its `n`-th instruction, and the trap's wasm backtrace says which
//! functions were running there. Sampling every `step` instructions of every phase, each
//! sample from a fresh VM brought to the same state, gives an exact-to-`step` profile: self
//! fuel per function (where the sample stopped) and inclusive fuel (anywhere on the stack).
//!
//!   cargo run --release --example fuel_profile -- [workload] [step] [path/to/mcp_filter.wasm]
//!
//! e.g. `cargo run --release --example fuel_profile -- json 50`. `FUEL_PHASE=request_headers`
//! (a name of `PHASES`) profiles that phase alone; `FUEL_CONFIG='"min_level": "debug", '` adds
//! top-level plugin configuration fields. The `.wasm` must keep its name section (the
//! `wasm` profile strips debug info only). For fuel by source line, inlined code included, build
//! the filter with line tables and set `WASMTIME_BACKTRACE_DETAILS=1`:
//!
//!   CARGO_PROFILE_WASM_DEBUG=line-tables-only CARGO_PROFILE_WASM_STRIP=none \
//!     cargo build --profile wasm --target wasm32-wasip1 -p mcp-filter --target-dir target/lines
//!   WASMTIME_BACKTRACE_DETAILS=1 cargo run --release --example fuel_profile -- json 20 \
//!     target/lines/wasm32-wasip1/wasm/mcp_filter.wasm

mod support;

use proxy_wasm_test_host::{Vm, World};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{
    default_wasm, lifecycle, load, phase, plugin_config, workloads, Result, Workload, PHASES,
};

/// Lifecycles run before the measured one, so caches and buffers are warm as in steady state.
const WARMUP: usize = 20;

/// A VM in steady state, with the measured lifecycle run up to (not including) phase `upto`.
fn prepared(
    wasm: &Path,
    w: &Workload,
    upto: usize,
) -> Result<(Vm, Option<proxy_wasm_test_host::StreamId>)> {
    let world = World::new();
    // `FUEL_CONFIG='"min_level": "debug", '` profiles another configuration.
    let extra = std::env::var("FUEL_CONFIG").unwrap_or_default();
    let mut vm = load(&world, wasm, &plugin_config(&extra, ""))?;
    for _ in 0..WARMUP {
        lifecycle(&mut vm, w)?;
        world.advance(Duration::from_millis(1));
    }
    let mut s = None;
    for i in 0..upto {
        phase(&mut vm, &mut s, w, i)?;
    }
    Ok((vm, s))
}

/// Function names of a trap's wasm backtrace, innermost first, demangled enough to read
/// (functions only: frames inlined into them are left to [`source_lines`]).
fn frames(trap: &str) -> Vec<String> {
    trap.lines()
        .filter(|line| !line.trim_start().starts_with("- "))
        .filter_map(|line| line.split_once(" - ").map(|(_, rest)| rest))
        .map(|rest| {
            let name = rest.split(": wasm trap").next().unwrap_or(rest);
            demangle(name.trim_start_matches("mcp_filter.wasm!"))
        })
        .collect()
}

/// The source lines of a trap's backtrace, innermost (inlined frames included) first, paths
/// made relative to this project; empty unless the `.wasm` has line tables and
/// `WASMTIME_BACKTRACE_DETAILS=1` is set.
fn source_lines(trap: &str) -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    trap.lines()
        .filter_map(|line| line.trim_start().strip_prefix("at "))
        .map(|at| {
            let at = at.split(": wasm trap").next().unwrap_or(at);
            // `file:line:column` to `file:line`.
            let at = at.rsplit_once(':').map_or(at, |(file_line, _)| file_line);
            at.strip_prefix(root).unwrap_or(at).to_string()
        })
        .collect()
}

/// Legacy Rust mangling (`_ZN` length-prefixed segments, `17h<hash>E`) to `a::b::c`.
fn demangle(symbol: &str) -> String {
    let Some(mut rest) = symbol.strip_prefix("_ZN") else {
        return symbol.to_string();
    };
    let mut parts = Vec::new();
    while let Some(len_end) = rest.find(|c: char| !c.is_ascii_digit()) {
        let Ok(len) = rest[..len_end].parse::<usize>() else {
            break;
        };
        let Some(part) = rest.get(len_end..len_end + len) else {
            break;
        };
        if !(part.starts_with('h') && part.len() == 17) {
            parts.push(
                part.replace("$LT$", "<")
                    .replace("$GT$", ">")
                    .replace("$u20$", " ")
                    .replace("$u7b$", "{")
                    .replace("$u7d$", "}")
                    .replace("$RF$", "&")
                    .replace("$C$", ",")
                    .replace("..", "::"),
            );
        }
        rest = &rest[len_end + len..];
    }
    parts.join("::")
}

fn print_top(title: &str, fuel: BTreeMap<String, u64>, rows: usize) {
    println!("\n{title}:");
    let mut sorted: Vec<_> = fuel.into_iter().collect();
    sorted.sort_by_key(|(_, fuel)| std::cmp::Reverse(*fuel));
    for (name, fuel) in sorted.iter().take(rows) {
        println!("{fuel:>8}  {name}");
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_else(|| "json".to_string());
    let step: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let wasm = args.next().map(PathBuf::from).unwrap_or_else(default_wasm);
    let workloads = workloads()?;
    let w = workloads
        .iter()
        .find(|w| w.name == workload)
        .ok_or("unknown workload")?;
    let mut self_fuel: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_caller: BTreeMap<String, u64> = BTreeMap::new();
    let mut inclusive: BTreeMap<String, u64> = BTreeMap::new();
    let mut self_lines: BTreeMap<String, u64> = BTreeMap::new();
    let mut inclusive_lines: BTreeMap<String, u64> = BTreeMap::new();
    let only = std::env::var("FUEL_PHASE").ok();
    let mut total = 0;
    for (i, name) in PHASES.iter().enumerate() {
        if only.as_deref().is_some_and(|only| only != *name) {
            continue;
        }
        let (mut vm, mut s) = prepared(&wasm, w, i)?;
        let before = vm.fuel_consumed();
        phase(&mut vm, &mut s, w, i)?;
        let fuel = vm.fuel_consumed() - before;
        total += fuel;
        println!("phase {name}: {fuel}");
        let mut at = step / 2;
        while at < fuel {
            let (mut vm, mut s) = prepared(&wasm, w, i)?;
            vm.set_fuel_limit(Some(at));
            if let Err(e) = phase(&mut vm, &mut s, w, i) {
                let trap = e.to_string();
                let stack = frames(&trap);
                let lines = source_lines(&trap);
                if let Some(leaf) = lines.first() {
                    let ours = lines
                        .iter()
                        .find(|l| !l.starts_with('/') && l.contains(".rs:"));
                    let at = match ours {
                        Some(ours) if ours != leaf => format!("{ours}  ({leaf})"),
                        _ => leaf.clone(),
                    };
                    *self_lines.entry(at).or_default() += step;
                }
                let mut seen = std::collections::BTreeSet::new();
                for line in lines.into_iter().filter(|l| !l.starts_with('/')) {
                    if seen.insert(line.clone()) {
                        *inclusive_lines.entry(line).or_default() += step;
                    }
                }
                if let Some(leaf) = stack.first() {
                    *self_fuel.entry(leaf.clone()).or_default() += step;
                    let caller = stack.get(1).map_or("", String::as_str);
                    *by_caller
                        .entry(format!("{leaf}  <-  {caller}"))
                        .or_default() += step;
                }
                let mut seen = std::collections::BTreeSet::new();
                for f in stack {
                    if seen.insert(f.clone()) {
                        *inclusive.entry(f).or_default() += step;
                    }
                }
            }
            at += step;
        }
    }
    println!("lifecycle: {total} fuel, sampled every {step}");
    print_top("self fuel", self_fuel, 40);
    print_top("self fuel by caller", by_caller, 40);
    print_top("inclusive fuel", inclusive, 60);
    if !self_lines.is_empty() {
        print_top(
            "self fuel by source line (this project's innermost; the library line in brackets)",
            self_lines,
            60,
        );
        print_top(
            "inclusive fuel by source line of this project",
            inclusive_lines,
            60,
        );
    }
    Ok(())
}
