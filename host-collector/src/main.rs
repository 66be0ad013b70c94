//! Entry point: configuration, logging, runtime, and the signal-driven graceful shutdown.

use std::process::ExitCode;

use clap::Parser;
use host_collector::{app, config::Config, logging};

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("import") {
        return import(std::env::args().skip(1));
    }
    let config = Config::parse();
    if let Err(e) = logging::init(config.log.log_format, config.log.log_level) {
        eprintln!("host-collector: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(ev = "start", msg = "cannot start runtime", error = %e);
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

/// `host-collector import [--database-url …] LOG…`: prints the report as JSON.
fn import(args: impl Iterator<Item = String>) -> ExitCode {
    let args = host_collector::import::ImportArgs::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("host-collector import: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(host_collector::import::run(&args)) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("host-collector import: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> ExitCode {
    let running = match app::start(&config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(ev = "start", msg = "cannot start", error = %e);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = wait_for_signal().await {
        tracing::error!(ev = "signal", msg = "cannot listen for signals", error = %e);
    }
    running.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(ev = "signal", msg = "shutdown requested", signal = name);
    Ok(())
}
