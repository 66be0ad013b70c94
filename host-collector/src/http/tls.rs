//! TLS on the main listener (`--tls-cert` / `--tls-key`, PEM): rustls with the ring provider,
//! HTTP/1.1 over each accepted connection. Envoy reaches it with an upstream TLS context that
//! trusts the certificate's CA (docs: host-collector/README.md, TLS).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The acceptor for a PEM certificate chain and private key; the error says which file and why.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cannot read the certificate chain {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS: the key does not fit the certificate: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` over TLS until `stop`; connections already open finish on their own.
pub fn serve(
    listener: TcpListener,
    router: axum::Router,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(connection) => connection,
                    Err(e) => {
                        tracing::warn!(ev = "http", msg = "accept failed", error = %e);
                        continue;
                    }
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            let acceptor = acceptor.clone();
            let app = router.clone().layer(axum::Extension(ConnectInfo(remote)));
            tokio::spawn(serve_connection(tcp, remote, acceptor, app));
        }
    })
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    app: axum::Router,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(ev = "http", msg = "TLS handshake failed", peer = %remote, error = %e);
            return;
        }
    };
    let service = TowerToHyperService::new(app);
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(ev = "http", msg = "connection ended with an error", peer = %remote, error = %e);
    }
}
