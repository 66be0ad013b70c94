//! The MCP capabilities both demo servers expose: tools, one resource, one prompt.
//!
//! Each tool exists to produce one distinct wire shape the filter must handle:
//! a plain result (`echo`, `add`), a JSON-RPC error (`fail`), a tool-level
//! error result (`tool_error`), a slow response (`slow`) and a response
//! stream carrying notifications before the result (`progress`).

use std::time::Duration;

use rmcp::{
    handler::server::{
        router::{prompt::PromptRouter, tool::ToolRouter},
        wrapper::Parameters,
    },
    model::{
        CallToolResult, ContentBlock, Implementation, ListResourcesResult, PaginatedRequestParams,
        ProgressNotificationParam, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, RequestMetaObject, Resource, ResourceContents, Role,
        ServerCapabilities, ServerConfig,
    },
    prompt, prompt_handler, prompt_router, schemars,
    service::RequestContext,
    tool, tool_handler, tool_router, ErrorData as McpError, Peer, RoleServer, ServerHandler,
};
use serde::Deserialize;

pub const README_URI: &str = "demo://readme";
pub const README_TEXT: &str =
    "demo-mcp: a tiny MCP server used to exercise the MCP-aware Envoy filter end to end.";
/// Message of the JSON-RPC error returned by the `fail` tool.
pub const FAIL_MESSAGE: &str = "fail tool always fails";
/// Text content of the `isError: true` result returned by `tool_error`.
pub const TOOL_ERROR_TEXT: &str = "tool_error: the tool ran and reported a failure";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text returned unchanged.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    pub a: f64,
    pub b: f64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SlowArgs {
    /// Milliseconds to sleep before answering.
    pub ms: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ProgressArgs {
    /// Number of notifications sent before the result.
    pub steps: u32,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GreetArgs {
    pub name: String,
}

/// Stateless handler; a fresh clone serves each MCP session.
#[derive(Clone)]
pub struct DemoHandler {
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
}

impl Default for DemoHandler {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl DemoHandler {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }

    #[tool(description = "Return the given text")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Add two numbers")]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Always answers with a JSON-RPC error (-32602)")]
    async fn fail(&self) -> Result<CallToolResult, McpError> {
        Err(McpError::invalid_params(FAIL_MESSAGE, None))
    }

    #[tool(description = "Always answers with a tool result flagged isError: true")]
    async fn tool_error(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(TOOL_ERROR_TEXT)])
    }

    #[tool(description = "Sleep for `ms` milliseconds, then answer")]
    async fn slow(&self, Parameters(SlowArgs { ms }): Parameters<SlowArgs>) -> String {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        format!("slept {ms} ms")
    }

    #[tool(
        description = "Send `steps` progress notifications (needs a progressToken in _meta) before answering"
    )]
    async fn progress(
        &self,
        Parameters(ProgressArgs { steps }): Parameters<ProgressArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<String, McpError> {
        // The spec only allows progress notifications for a requester-supplied
        // token; without one the tool just answers.
        if let Some(token) = meta.get_progress_token() {
            for step in 1..=steps {
                let param = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(steps))
                    .with_message(format!("step {step}/{steps}"));
                peer.notify_progress(param)
                    .await
                    .map_err(|e| McpError::internal_error(e.to_string(), None))?;
                // Spread the messages out so a proxy sees them as separate chunks.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(format!("completed {steps} steps"))
    }
}

#[prompt_router]
impl DemoHandler {
    #[prompt(description = "Greet someone by name")]
    async fn greet(
        &self,
        Parameters(GreetArgs { name }): Parameters<GreetArgs>,
    ) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            format!("Please greet {name} warmly."),
        )]
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for DemoHandler {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_prompts()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("demo-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions("Demo server for the MCP-aware Envoy filter tests")
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let readme = Resource::new(README_URI, "readme")
            .with_description("What this demo server is")
            .with_mime_type("text/plain");
        Ok(ListResourcesResult::with_all_items(vec![readme]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        if request.uri != README_URI {
            let data = serde_json::json!({ "uri": request.uri });
            return Err(McpError::resource_not_found("unknown resource", Some(data)));
        }
        let contents = vec![ResourceContents::text(README_TEXT, README_URI)];
        Ok(ReadResourceResult::new(contents).into())
    }
}
