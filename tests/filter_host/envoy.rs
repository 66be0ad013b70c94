//! Envoy configurations for end-to-end tests: one listener with the MCP filter (as in
//! envoy/envoy.yaml: `allow_on_headers_stop_iteration`, SSE-friendly timeouts) in front of
//! the given routes and clusters. `{{ADMIN_PORT}}`, `{{LISTENER_PORT}}` and `{{TEST_DIR}}`
//! stay as placeholders for the harness's `Envoy::start`.

/// A route: path prefix, cluster, optional prefix rewrite.
pub struct Route<'a> {
    pub prefix: &'a str,
    pub cluster: &'a str,
    pub rewrite: Option<&'a str>,
}

/// What varies between tests.
pub struct EnvoyConfig<'a> {
    /// The filter's JSON plugin configuration.
    pub filter: &'a str,
    pub routes: &'a [Route<'a>],
    /// Clusters on loopback: (name, port).
    pub clusters: &'a [(&'a str, u16)],
    /// Route timeout (`0s` = none, for SSE).
    pub route_timeout: &'a str,
    /// A JSON access log with the filter-state mirror, at `{{TEST_DIR}}/access.log`.
    pub access_log: bool,
    /// Envoy's exact connection balance: each new connection goes to the worker with the
    /// fewest, so two connections opened one after the other land on different workers.
    pub spread_connections: bool,
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
    /// The YAML, with the filter loaded from `wasm`.
    pub fn render(&self, wasm: &str) -> String {
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
        let clusters: String = self
            .clusters
            .iter()
            .map(|(name, port)| {
                format!(
                    r#"
  - name: {name}
    type: STATIC
    connect_timeout: 0.5s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}"#
                )
            })
            .collect();
        let filter: String = self
            .filter
            .lines()
            .map(|l| format!("\n                    {l}"))
            .collect();
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
          http_filters:
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
                  value: |{filter}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{clusters}
"#
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
