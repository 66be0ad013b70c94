//! Scripted MCP client scenarios and the JSON summary they produce.
//!
//! Every scenario returns a [`Summary`]; `demo-mcp-client` prints it as one
//! JSON object and exits non-zero unless every step behaved as expected
//! (an expected error counts as success).

pub mod legacy;
pub mod raw;
pub mod recording;
pub mod scenarios;

use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;

/// Where and how to reach the server under test.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    /// Extra headers sent on every request (e.g. `authorization`).
    pub headers: HeaderMap,
}

/// One scenario step as printed on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    /// True when the step behaved as the scenario expects.
    pub ok: bool,
    /// JSON-RPC id of the request the step sent, if it sent one.
    pub request_id: Option<Value>,
    pub detail: Value,
}

/// The whole scenario outcome: `{"scenario","ok","steps",...}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub ok: bool,
    pub steps: Vec<Step>,
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
}

impl Summary {
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            ..Self::default()
        }
    }

    pub fn push(
        &mut self,
        name: impl Into<String>,
        ok: bool,
        request_id: Option<Value>,
        detail: Value,
    ) {
        self.steps.push(Step {
            name: name.into(),
            ok,
            request_id,
            detail,
        });
    }

    /// Records a step that could not run at all (transport failure, timeout).
    pub fn fail(&mut self, name: impl Into<String>, error: impl std::fmt::Display) {
        self.push(
            name,
            false,
            None,
            serde_json::json!({ "error": error.to_string() }),
        );
    }

    /// Sets `ok`: a scenario with no steps never counts as a success.
    pub fn finish(mut self) -> Self {
        self.ok = !self.steps.is_empty() && self.steps.iter().all(|step| step.ok);
        self
    }
}

/// Text of the first `text` content block of a tool result / prompt message.
pub fn first_text(result: &Value) -> Option<&str> {
    result
        .get("content")?
        .as_array()?
        .iter()
        .find_map(|block| block.get("text")?.as_str())
}
