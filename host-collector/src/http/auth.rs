//! Bearer-token check with a constant-time comparison.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};

/// The expected token, kept only as a digest so comparisons take the same time whatever the
/// length or content of the offered token.
#[derive(Clone)]
pub enum Auth {
    Token([u8; 32]),
    Insecure,
}

impl Auth {
    pub fn new(token: Option<&str>) -> Self {
        match token {
            Some(t) => Auth::Token(Sha256::digest(t.as_bytes()).into()),
            None => Auth::Insecure,
        }
    }

    /// The authenticated user name for the access log, or `None` to refuse.
    pub fn check(&self, headers: &HeaderMap) -> Option<&'static str> {
        let Auth::Token(expected) = self else {
            return Some("anonymous");
        };
        let offered = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let digest: [u8; 32] = Sha256::digest(offered.trim().as_bytes()).into();
        let diff = digest
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some("filter")
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
        let auth = Auth::new(Some("0123456789abcdef"));
        assert_eq!(
            auth.check(&headers("Bearer 0123456789abcdef")),
            Some("filter")
        );
        assert_eq!(auth.check(&headers("Bearer 0123456789abcdeF")), None);
        assert_eq!(auth.check(&headers("0123456789abcdef")), None);
        assert_eq!(auth.check(&HeaderMap::new()), None);
        assert!(Auth::Insecure.check(&HeaderMap::new()).is_some());
    }
}
