//! Certificates for TLS tests, made with the `openssl` command line: a self-signed
//! certificate for one server, or a CA and a server certificate it signs (for clients that
//! verify the chain). Valid for `127.0.0.1` and `localhost`, one day.

use std::path::{Path, PathBuf};
use std::process::Command;

/// PEM files of one server.
pub struct ServerCert {
    /// The certificate that clients trust: the CA's, or the server's own when self-signed.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

const SUBJECT_ALT_NAME: &str = "subjectAltName=DNS:localhost,IP:127.0.0.1";

fn openssl(args: &[&str], files: &[&Path]) {
    let mut command = Command::new("openssl");
    command.args(args);
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("openssl runs (install the openssl package): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in files {
        assert!(file.exists(), "openssl made {}", file.display());
    }
}

fn path(file: &Path) -> &str {
    file.to_str().expect("a UTF-8 temporary path")
}

/// `openssl req -x509`: a new RSA key and a self-signed certificate for `subject`, valid
/// one day, with `extra` arguments.
fn self_signed_pair(subject: &str, extra: &[&str], key: &Path, cert: &Path) {
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
    ];
    args.extend(["-subj", subject]);
    args.extend(extra);
    args.extend(["-keyout", path(key), "-out", path(cert)]);
    openssl(&args, &[cert, key]);
}

/// A self-signed certificate for a server at `localhost` / `127.0.0.1`, in `dir`.
pub fn self_signed(dir: &Path) -> ServerCert {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    self_signed_pair("/CN=localhost", &["-addext", SUBJECT_ALT_NAME], &key, &cert);
    ServerCert {
        ca: cert.clone(),
        cert,
        key,
    }
}

/// A CA and a server certificate it signs (servers that refuse a self-signed certificate
/// as their own, such as MariaDB, get one from a CA).
pub fn signed_by_ca(dir: &Path) -> ServerCert {
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (csr, cert, key) = (
        dir.join("server.csr"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    );
    let ext = dir.join("server.ext");
    std::fs::write(&ext, SUBJECT_ALT_NAME).expect("write the extension file");
    self_signed_pair("/CN=mcp-gateway test CA", &[], &ca_key, &ca);
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            path(&key),
            "-out",
            path(&csr),
        ],
        &[&csr, &key],
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(&ca),
            "-CAkey",
            path(&ca_key),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            path(&ext),
            "-out",
            path(&cert),
        ],
        &[&cert],
    );
    ServerCert { ca, cert, key }
}
