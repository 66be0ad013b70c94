//! Bearer tokens and what each may do: ingest (the filters) or query (the audit view, the
//! query API, detailed health), with several tokens per scope so a token can be rotated
//! without a gap. Tokens are kept only as SHA-256 digests and every configured digest is
//! compared, in constant time, whatever the offered token.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /v1/logs`.
    Ingest,
    /// Reading the audit trail and the collector's state.
    Query,
}

/// The tokens a collector accepts, as digests.
#[derive(Clone)]
pub enum Auth {
    Tokens {
        /// `--token`: both scopes.
        both: Vec<[u8; 32]>,
        ingest: Vec<[u8; 32]>,
        query: Vec<[u8; 32]>,
    },
    Insecure,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

fn digests<'a>(tokens: impl IntoIterator<Item = &'a String>) -> Vec<[u8; 32]> {
    tokens.into_iter().map(|t| digest(t)).collect()
}

impl Auth {
    /// `both` is `--token`; `ingest` and `query` the scoped tokens. No token at all means
    /// insecure (the config refuses that unless asked for).
    pub fn new(both: Option<&String>, ingest: &[String], query: &[String]) -> Self {
        if both.is_none() && ingest.is_empty() && query.is_empty() {
            return Auth::Insecure;
        }
        Auth::Tokens {
            both: digests(both),
            ingest: digests(ingest),
            query: digests(query),
        }
    }

    /// The authenticated user name for the access log, or `None` to refuse.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Option<&'static str> {
        let Auth::Tokens {
            both,
            ingest,
            query,
        } = self
        else {
            return Some("anonymous");
        };
        let offered = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let offered = digest(offered);
        let scoped = match scope {
            Scope::Ingest => ingest,
            Scope::Query => query,
        };
        // Every digest is compared (no early exit), so the time taken says nothing about
        // which token, if any, matched.
        let matches = |list: &[[u8; 32]]| {
            list.iter().fold(false, |found, expected| {
                let diff = offered
                    .iter()
                    .zip(expected)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                found | (diff == 0)
            })
        };
        let (by_both, by_scope) = (matches(both), matches(scoped));
        match (by_both, by_scope, scope) {
            (true, _, Scope::Ingest) => Some("filter"),
            (true, _, Scope::Query) => Some("token"),
            (false, true, Scope::Ingest) => Some("ingest"),
            (false, true, Scope::Query) => Some("query"),
            (false, false, _) => None,
        }
    }
}

pub fn unauthorized() -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({ "error": "missing or invalid bearer token" })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("ascii"),
        );
        h
    }

    #[test]
    fn accepts_only_the_configured_token() {
        let auth = Auth::new(Some(&"0123456789abcdef".to_string()), &[], &[]);
        let check = |h: &HeaderMap| auth.check(h, Scope::Ingest);
        assert_eq!(check(&headers("Bearer 0123456789abcdef")), Some("filter"));
        assert_eq!(
            auth.check(&headers("Bearer 0123456789abcdef"), Scope::Query),
            Some("token"),
            "--token is good for both"
        );
        assert_eq!(check(&headers("Bearer 0123456789abcdeF")), None);
        assert_eq!(check(&headers("0123456789abcdef")), None);
        assert_eq!(check(&HeaderMap::new()), None);
        assert!(Auth::Insecure
            .check(&HeaderMap::new(), Scope::Query)
            .is_some());
    }

    #[test]
    fn scoped_tokens_do_only_their_job_and_rotate() {
        let ingest = [
            "ingest-token-old-0001".to_string(),
            "ingest-token-new-0002".into(),
        ];
        let query = ["query-token-viewer-01".to_string()];
        let auth = Auth::new(None, &ingest, &query);
        for t in &ingest {
            let h = headers(&format!("Bearer {t}"));
            assert_eq!(auth.check(&h, Scope::Ingest), Some("ingest"), "{t}");
            assert_eq!(auth.check(&h, Scope::Query), None, "{t} cannot read");
        }
        let viewer = headers("Bearer query-token-viewer-01");
        assert_eq!(auth.check(&viewer, Scope::Query), Some("query"));
        assert_eq!(
            auth.check(&viewer, Scope::Ingest),
            None,
            "a viewer cannot write"
        );
    }
}
