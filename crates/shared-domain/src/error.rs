//! Stable error codes. Every HTTP error body is
//! `{"error": {"code": "<code>", "message": "<human text>", "request_id": "..."}}`;
//! clients match on `code`, which never changes meaning once released.
//!
//! [`error_codes!`] below is the one table: one row per code (variant, wire
//! name, HTTP status, meaning). The enum, its status, its name and the list
//! of every code are generated from it; nothing is listed twice.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = ($name:literal, $status:literal), )+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant ),+ ];

            /// The HTTP status for this code.
            pub fn status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )+ }
            }

            /// The wire name (`code` in error bodies).
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )+ }
            }
        }
    };
}

error_codes! {
    /// The body (or the `metadata` part) is not valid JSON.
    MalformedJson = ("malformed_json", 400),
    /// Valid JSON of the wrong shape or with invalid values; a bad query or header.
    InvalidRequest = ("invalid_request", 400),
    /// A broken multipart body, or an unexpected part.
    InvalidMultipart = ("invalid_multipart", 400),
    /// A path segment that is not a UUID.
    InvalidId = ("invalid_id", 400),
    /// No `Authorization: Bearer` header.
    MissingAuth = ("missing_auth", 401),
    /// An unknown, revoked or expired key, or a wrong admin token.
    InvalidAuth = ("invalid_auth", 401),
    /// Editing another company's public template.
    Forbidden = ("forbidden", 403),
    /// No such route.
    NotFound = ("not_found", 404),
    /// The path exists, the method does not (the `Allow` header lists those that do).
    MethodNotAllowed = ("method_not_allowed", 405),
    TemplateNotFound = ("template_not_found", 404),
    DesignNotFound = ("design_not_found", 404),
    CompanyNotFound = ("company_not_found", 404),
    ApiKeyNotFound = ("api_key_not_found", 404),
    /// No pool policy is set there.
    PolicyNotFound = ("policy_not_found", 404),
    /// The request body stopped arriving (an upload idle for 30 s).
    RequestTimeout = ("request_timeout", 408),
    /// The company's plan allows no more designs.
    DesignLimitReached = ("design_limit_reached", 409),
    /// The template was edited or deleted again and again while the design
    /// was being made; retrying is safe.
    TemplateChanged = ("template_changed", 409),
    /// Another request with the same `Idempotency-Key` is still being
    /// processed; retry after `Retry-After`.
    RequestInProgress = ("request_in_progress", 409),
    /// `If-Match` names a representation that is no longer current.
    PreconditionFailed = ("precondition_failed", 412),
    PayloadTooLarge = ("payload_too_large", 413),
    UnsupportedMediaType = ("unsupported_media_type", 415),
    TemplateHasNoImages = ("template_has_no_images", 422),
    /// The `Idempotency-Key` was used before with a different request.
    IdempotencyKeyReused = ("idempotency_key_reused", 422),
    /// Too many requests; retry after `Retry-After` seconds.
    RateLimited = ("rate_limited", 429),
    // 5xx from here on: faults in dependencies or capacity, never bad input.
    /// Postgres unreachable or out of connections.
    StorageUnavailable = ("storage_unavailable", 503),
    ObjectStoreUnavailable = ("object_store_unavailable", 503),
    /// The recommendation service failed and no stale answer may be served.
    RecommendationsUnavailable = ("recommendations_unavailable", 503),
    /// The recommendation service did not answer within its timeout.
    RecommendationsTimeout = ("recommendations_timeout", 504),
    /// This replica is at its capacity for the work asked (upload bytes in
    /// flight, or the company's designs being made by copy); retry after
    /// `Retry-After` seconds.
    Busy = ("busy", 503),
    Internal = ("internal", 500),
}

/// Displays an error and each of its causes, outermost first, joined by
/// ": " -- how errors are logged (`error = %Chain(&e)`), so a cause kept as
/// `source()` is never dropped from the log.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// The JSON error envelope.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For 5xx, a generic text: the details go to the service's log under
    /// `request_id`, never to the client.
    pub message: String,
    /// The request's id (also the `X-Request-Id` response header): quote it
    /// when reporting a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_shows_every_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(Chain(&e).to_string(), "outer: inner");
    }

    #[test]
    fn wire_names_match_serde_and_bad_input_is_never_5xx() {
        use ErrorCode::*;
        let mut names = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!(names.insert(code.as_str()), "{code:?} listed twice");
            // 5xx: a dependency's fault or this replica's capacity.
            let server_side = matches!(
                code,
                StorageUnavailable
                    | ObjectStoreUnavailable
                    | RecommendationsUnavailable
                    | RecommendationsTimeout
                    | Busy
                    | Internal
            );
            assert_eq!(code.status() >= 500, server_side, "{code:?}");
        }
    }
}
