//! The demo MCP peers (examples/demo-mcp) as processes: the Streamable HTTP and legacy
//! HTTP+SSE servers (with the requests they recorded) and the scripted client.

use std::process::{Command, ExitStatus};

use serde_json::Value;

use crate::http;
use crate::paths::{binary, free_port, TestDir};
use crate::poll::{wait_until, POLL, STARTUP_DEADLINE};
use crate::process::Proc;

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
        let mut command = Command::new(binary(bin));
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
            matches!(http::get(&health), Ok((200, _)))
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
        let response = http::request("GET", &self.url("/debug/requests"), &[], "")
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
        let output = Command::new(binary("demo-mcp-client"))
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
