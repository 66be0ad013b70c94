//! Wiring: builds every layer from the configuration, runs the listeners and background
//! tasks, and shuts them down in the order that loses nothing silently: stop HTTP, close the
//! buffer, drain the writer within its own deadline, settle the buffer, then stop the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounting::AccountingCollector;
use crate::buffer::{Buffer, QueueLevels, ReleaseTask};
use crate::config::Config;
use crate::health::{self, Health};
use crate::http::{self, HttpState};
use crate::ingest::Ingestor;
use crate::internal_events::Telemetry;
use crate::store::{self, Store};
use crate::writer::{DrainReport, Writer};

/// How long in-flight requests may take to finish once shutdown begins.
const HTTP_GRACE: Duration = Duration::from_secs(5);
/// Bound on schema preparation at startup; if it fails the writer retries on first use.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A started collector.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub buffer: Arc<Buffer>,
    pub telemetry: Arc<Telemetry>,
    http_stop: watch::Sender<bool>,
    writer_stop: watch::Sender<bool>,
    tasks_stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    metrics_server: JoinHandle<()>,
    writer: JoinHandle<DrainReport>,
    background: Vec<JoinHandle<()>>,
    spool_release: Option<ReleaseTask>,
    otlp: Option<crate::otlp::Exporter>,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError(format!("cannot listen on {addr} ({what}): {e}")))
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(ev = "http", msg = "server failed", error = %e);
        }
    })
}

pub async fn start(config: &Config) -> Result<Running, StartError> {
    for (setting, value) in config.describe() {
        tracing::info!(ev = "config", msg = "setting", setting, value = %value);
    }
    if config.ingest.fingerprint_key.is_none() {
        tracing::warn!(
            ev = "config",
            msg = "no --fingerprint-key: raw credentials found in lines get unkeyed SHA-256 \
                   fingerprints, which anyone can compute for a guessed credential; set \
                   --fingerprint-key (and the filters' fingerprint_key) to a random secret"
        );
    }
    let store = store::open(&config.store.database_url, &config.store.options())
        .map_err(|e| StartError(e.to_string()))?;
    prepare_schema(store.as_ref()).await;

    let telemetry = Arc::new(Telemetry::default());
    let (buffer, recovered) =
        Buffer::open(config.buffer.config(), telemetry.clone()).map_err(|e| StartError(e.0))?;
    let buffer = Arc::new(buffer);
    let limiter = config.http.limiter();
    let accounting = Arc::new(config.ingest.accounting());
    let red = Arc::new(config.ingest.red_metrics());
    let mut ingestor = Ingestor::new(buffer.clone(), telemetry.clone(), &config.ingest.limits())
        .with_observer(accounting.clone())
        .with_observer(red.clone());
    let otlp = match config.otlp.settings().map_err(StartError)? {
        Some(settings) => {
            let (exporter, hook) = crate::otlp::start(settings, Some(telemetry.clone()));
            let collector = crate::otlp::OtlpCollector::new(&exporter, &hook);
            ingestor = ingestor.with_observer(hook);
            Some((exporter, collector))
        }
        None => None,
    };
    ingestor.replay(recovered).map_err(|e| StartError(e.0))?;
    let spool_release = buffer.start_release();
    let ingestor = Arc::new(ingestor);
    telemetry.add_probe(buffer.clone());
    telemetry.add_probe(ingestor.status_tracker());
    telemetry.add_probe(limiter.clone());
    let health = Arc::new(Health {
        telemetry: telemetry.clone(),
        buffer: buffer.clone(),
        limiter: limiter.clone(),
        config: config.health.config(),
    });
    let mut registry = crate::metrics::registry(&telemetry);
    red.register(&mut registry);
    registry.register_collector(Box::new(AccountingCollector(accounting.clone())));
    let otlp = otlp.map(|(exporter, collector)| {
        registry.register_collector(Box::new(collector));
        exporter
    });
    let registry = Arc::new(registry);

    let listener = bind(config.http.listen, "ingest").await?;
    let metrics_listener = bind(config.http.metrics_listen, "metrics").await?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError(e.to_string()))?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|e| StartError(e.to_string()))?;

    let (http_stop, http_stop_rx) = watch::channel(false);
    let (writer_stop, writer_stop_rx) = watch::channel(false);
    let (tasks_stop, tasks_stop_rx) = watch::channel(false);

    let state = Arc::new(HttpState {
        ingestor,
        accounting: accounting.clone(),
        store: store.clone(),
        health,
        limiter,
        telemetry: telemetry.clone(),
        auth: config.http.auth(),
        max_body_bytes: config.http.max_body_bytes,
        query_timeout: config.writer.db_write_timeout,
        port: addr.port(),
        gateway_health_url: config.http.gateway_health_url.clone(),
    });
    let server = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => {
            let acceptor = http::tls::acceptor(cert, key).map_err(StartError)?;
            http::tls::serve(listener, http::router(state), acceptor, http_stop_rx)
        }
        _ => serve(listener, http::router(state), http_stop_rx),
    };
    let metrics_server = serve(
        metrics_listener,
        http::metrics_router(registry),
        tasks_stop_rx.clone(),
    );
    let writer = Writer {
        buffer: buffer.clone(),
        store: store.clone(),
        telemetry: telemetry.clone(),
        observers: vec![accounting.clone()],
        config: config.writer.config(),
    };
    let writer = tokio::spawn(writer.run(writer_stop_rx));
    let mut background = vec![tokio::spawn(health::run_pinger(
        store.clone(),
        telemetry.clone(),
        config.health.health_check_interval,
        config.store.db_acquire_timeout,
        tasks_stop_rx.clone(),
    ))];
    background.push(tokio::spawn(crate::shared_accounting::run_flusher(
        store.clone(),
        accounting.clone(),
        config.ingest.status_flush_interval,
        tasks_stop_rx.clone(),
    )));
    if let Some(retention) = config.retention.config() {
        background.push(tokio::spawn(crate::retention::run(
            store.clone(),
            telemetry.clone(),
            retention,
            tasks_stop_rx,
        )));
    }
    tracing::info!(
        ev = "start",
        msg = "host-collector listening",
        addr = %addr,
        metrics_addr = %metrics_addr,
        store = store.kind()
    );
    Ok(Running {
        addr,
        metrics_addr,
        buffer,
        telemetry,
        http_stop,
        writer_stop,
        tasks_stop,
        server,
        metrics_server,
        writer,
        background,
        spool_release,
        otlp,
    })
}

async fn prepare_schema(store: &dyn Store) {
    match tokio::time::timeout(PREPARE_TIMEOUT, store.prepare()).await {
        Ok(Ok(())) => tracing::info!(ev = "db", msg = "schema ready", store = store.kind()),
        Ok(Err(e)) => tracing::warn!(
            ev = "db",
            msg = "cannot prepare schema yet; will retry on first write",
            error = %e
        ),
        Err(_) => tracing::warn!(
            ev = "db",
            msg = "schema preparation timed out; will retry on first write"
        ),
    }
}

impl Running {
    /// The buffer's queue levels and conservation counters, now (the test harness polls it).
    pub fn snapshot(&self) -> QueueLevels {
        self.buffer.levels()
    }

    /// Stops accepting, drains the queue within the drain deadline, and stops everything.
    pub async fn shutdown(self) -> DrainReport {
        tracing::info!(ev = "shutdown", msg = "stopping: no new requests accepted");
        let _ = self.http_stop.send(true);
        let mut server = self.server;
        if tokio::time::timeout(HTTP_GRACE, &mut server).await.is_err() {
            tracing::warn!(
                ev = "shutdown",
                msg = "in-flight requests cut after grace period"
            );
            server.abort();
        }
        // Everything ingest accepted has been offered to the exporter by now.
        if let Some(otlp) = self.otlp {
            otlp.shutdown().await;
        }
        // Stopped before the drain: what the drain drops must stay in the spool.
        if let Some(release) = self.spool_release {
            release.stop().await;
        }
        self.buffer.close();
        let _ = self.writer_stop.send(true);
        let report = self.writer.await.unwrap_or_else(|e| {
            tracing::error!(ev = "shutdown", msg = "writer task failed", error = %e);
            DrainReport::default()
        });
        self.buffer.settle();
        let _ = self.tasks_stop.send(true);
        for task in self.background {
            let _ = task.await;
        }
        let _ = self.metrics_server.await;
        let c = self.buffer.levels().counters;
        tracing::info!(
            ev = "shutdown",
            msg = "stopped",
            received = c.received,
            persisted = c.persisted,
            dead_lettered = c.dead_lettered,
            dropped_queue_full = c.dropped_queue_full,
            dropped_shutdown = c.dropped_shutdown
        );
        report
    }
}
