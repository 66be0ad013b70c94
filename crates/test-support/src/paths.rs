//! Where things are: the workspace root, the target directory, the binaries the tests start,
//! free loopback ports, and per-test scratch directories (kept when the test fails).

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

/// The workspace root: the nearest ancestor of this crate holding `[workspace]`.
pub fn workspace_root() -> PathBuf {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .find(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .map(|manifest| manifest.contains("[workspace]"))
                .unwrap_or(false)
        })
        .unwrap_or(&start)
        .to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir), // join keeps absolute paths as they are
        None => workspace_root().join("target"),
    }
}

/// A workspace binary (`host-collector`, `demo-mcp-server`, ...) built alongside the running
/// test binary (`<target>/<profile>/`, else `<target>/debug/`); panics with a build hint if
/// it is missing.
pub fn binary(name: &str) -> PathBuf {
    // Test binaries live in <target>/<profile>/deps/.
    let beside_tests = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(name)));
    let path = match beside_tests {
        Some(path) if path.exists() => path,
        _ => target_dir().join("debug").join(name),
    };
    assert!(
        path.exists(),
        "{} not found; run `make build` (or `cargo build --workspace --bins` with the same CARGO_TARGET_DIR) first",
        path.display()
    );
    path
}

/// A currently free TCP port on 127.0.0.1 (released before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free local port")
}

/// Per-test scratch directory; removed on drop unless the test is panicking (then its path
/// is printed, so the logs in it can be read).
pub struct TestDir {
    pub path: PathBuf,
}

/// `<pid>_<n>`: unique among the names this test process makes (directories, databases).
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

impl TestDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("mcp-test-{label}-{}", unique_suffix()));
        fs::create_dir_all(&path).expect("create test dir");
        Self { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test artifacts kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
