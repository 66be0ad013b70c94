//! What the request's protocol revision says of its messages: a method that revision does not
//! define (e.g. `initialize` in 2026-07-28, `server/discover` in 2025-11-25) is reported as
//! `protocol.unsupported` (`method_not_in_revision`), as is a batch from 2025-06-18 on
//! (`batch_not_in_revision`); a 2026-07-28 request must mirror its
//! method, and the tool, prompt or resource it names, in the `Mcp-Method` / `Mcp-Name` headers,
//! and one that does not is a validation failure (`missing_mcp_headers`), rejected with the
//! revision's HeaderMismatch error (`-32020`) when the validation policy rejects.

use super::{Env, Exchange, LocalReply};
use crate::events::{keys, EventName, Message as EventMessage};
use crate::jsonrpc::{Invalid, Kind, Parsed};
use crate::methods::{Revision, Target};
use crate::reply::{json_reply, jsonrpc_error};

impl Exchange {
    /// Checks the classified messages against the request's revision (when it is known).
    pub(super) fn check_revision(
        &mut self,
        parsed: &Parsed,
        holding: bool,
        env: &mut Env,
    ) -> Option<LocalReply> {
        let revision = self.common.revision()?;
        // JSON-RPC batches were removed in 2025-06-18.
        if matches!(parsed, Parsed::Batch { .. }) && revision >= Revision::V2025_06_18 {
            self.report_not_in_revision("batch_not_in_revision", "batch", revision.as_str(), env);
        }
        for message in parsed.messages() {
            if let Some(info) = message.info.filter(|info| !info.exists_in(revision)) {
                let version = revision.as_str();
                self.report_not_in_revision("method_not_in_revision", info.name, version, env);
            }
        }
        if revision != Revision::V2026_07_28 || self.request.legacy_post_session.is_some() {
            return None;
        }
        let Parsed::Single(message) = parsed else {
            return None;
        };
        let names_target = matches!(
            message.target_kind(),
            Target::Tool | Target::Prompt | Target::Resource
        );
        let missing = message.kind == Kind::Request
            && (self.request.header_method.is_none()
                || names_target && self.request.header_name.is_none());
        if !missing {
            return None;
        }
        let reject = holding && env.config.validation == crate::config::ValidationPolicy::Reject;
        let invalid = Invalid::MissingMcpHeaders;
        self.validation_failed(invalid, reject, None, env);
        if !reject {
            return None;
        }
        self.reject();
        let id = message.id.map(|id| id.to_json());
        Some(json_reply(
            400,
            jsonrpc_error(
                id.as_deref(),
                invalid.jsonrpc_code(),
                "Header mismatch: Mcp-Method and Mcp-Name are required",
                None,
            ),
        ))
    }

    fn report_not_in_revision(
        &mut self,
        reason: &'static str,
        what: &str,
        version: &str,
        env: &mut Env,
    ) {
        if let Some(mut event) = self.begin(
            env,
            EventName::ProtocolUnsupported,
            EventMessage::Text("not in the request's protocol revision"),
        ) {
            event
                .label(keys::REASON, reason)
                .str(keys::DETAIL, &format!("{what} ({version})"));
        }
    }
}
