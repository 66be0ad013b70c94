//! `demo-mcp-client`: runs one scripted MCP scenario and prints a JSON summary.
//!
//! Exit code 0 when every step behaved as expected, 1 otherwise, 2 on bad flags.
// Test infrastructure: a broken fixture should fail loudly, so unwrap, expect and panic are
// allowed here (the workspace denies them in the product's crates).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};
use demo_mcp::client::{legacy, raw, scenarios, Summary, Target};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scenario {
    /// Every request kind once, expected errors included.
    All,
    /// `--count` echo calls on one session.
    Traffic,
    /// A raw JSON-RPC batch POST after a raw initialize.
    Batch,
    /// The legacy HTTP+SSE transport; `--url` points at `/sse`.
    SseLegacy,
    /// The steps of the SDK interop matrix (see `scenarios::interop`).
    Interop,
}

#[derive(Parser, Debug)]
#[command(about = "Scripted MCP client printing a JSON summary")]
struct Args {
    /// MCP endpoint (usually Envoy's listener); for `sse-legacy` the SSE URL.
    #[arg(long, default_value = "http://127.0.0.1:10000/mcp")]
    url: String,
    /// Extra header sent on every request, as `Name: value`. Repeatable.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Number of echo calls for `traffic`.
    #[arg(long, default_value_t = 10)]
    count: u32,
    /// Protocol version the `batch` scenario offers and declares (2025-03-26 still had
    /// batches).
    #[arg(long, default_value = raw::STREAMABLE_PROTOCOL)]
    protocol_version: String,
    /// Overall deadline for the scenario, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

fn parse_header(raw: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("header {raw:?} is not `Name: value`"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| e.to_string())?;
    let value = HeaderValue::try_from(value.trim()).map_err(|e| e.to_string())?;
    Ok((name, value))
}

async fn run(args: &Args, target: &Target) -> Summary {
    match args.scenario {
        Scenario::All => scenarios::all(target).await,
        Scenario::Traffic => scenarios::traffic(target, args.count).await,
        Scenario::Batch => raw::batch(target, &args.protocol_version).await,
        Scenario::SseLegacy => legacy::sse_legacy(target).await,
        Scenario::Interop => scenarios::interop(target).await,
    }
}

fn scenario_name(scenario: Scenario) -> String {
    scenario
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> ExitCode {
    // Quiet by default: stdout is the summary, stderr is for problems.
    demo_mcp::init_tracing("warn");
    let args = Args::parse();
    let target = Target {
        url: args.url.clone(),
        headers: args.headers.iter().cloned().collect::<HeaderMap>(),
    };
    let deadline = Duration::from_secs(args.timeout_secs);
    let summary = match tokio::time::timeout(deadline, run(&args, &target)).await {
        Ok(summary) => summary,
        Err(_) => {
            let mut summary = Summary::new(&scenario_name(args.scenario));
            summary.fail(
                "deadline",
                format!("scenario exceeded {}s", args.timeout_secs),
            );
            summary
        }
    }
    .finish();
    println!(
        "{}",
        serde_json::to_string(&summary).expect("summary serializes")
    );
    if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
