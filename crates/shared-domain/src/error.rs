//! Stable error codes. Every HTTP error body is
//! `{"error": {"code": "<code>", "message": "<human text>"}}`; clients match on
//! `code`, which never changes meaning once released. One table maps each code
//! to its HTTP status.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400
    MalformedJson,
    InvalidRequest,
    InvalidMultipart,
    InvalidId,
    // 401 / 403
    MissingAuth,
    InvalidAuth,
    Forbidden,
    // 404
    NotFound,
    /// The path exists, the method does not (the `Allow` header lists those that do).
    MethodNotAllowed,
    TemplateNotFound,
    DesignNotFound,
    CompanyNotFound,
    ApiKeyNotFound,
    // 409 / 412 / 413 / 415 / 422 / 429
    DesignLimitReached,
    /// The template was edited or deleted again and again while the design
    /// was being made; retrying is safe.
    TemplateChanged,
    /// Another request with the same `Idempotency-Key` is still being
    /// processed; retry after `Retry-After`.
    RequestInProgress,
    /// `If-Match` names a representation that is no longer current.
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    TemplateHasNoImages,
    /// The `Idempotency-Key` was used before with a different request.
    IdempotencyKeyReused,
    /// Too many requests; retry after `Retry-After` seconds.
    RateLimited,
    // 5xx: faults in dependencies, never bad input
    StorageUnavailable,
    ObjectStoreUnavailable,
    /// The recommendation service failed and no stale answer may be served.
    RecommendationsUnavailable,
    /// The recommendation service did not answer within its timeout.
    RecommendationsTimeout,
    /// This replica is at its capacity for the work asked (upload bytes in
    /// flight); retry after `Retry-After` seconds.
    Busy,
    Internal,
}

impl ErrorCode {
    /// The HTTP status for this code: the one table.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            MalformedJson | InvalidRequest | InvalidMultipart | InvalidId => 400,
            MissingAuth | InvalidAuth => 401,
            Forbidden => 403,
            NotFound | TemplateNotFound | DesignNotFound | CompanyNotFound | ApiKeyNotFound => 404,
            MethodNotAllowed => 405,
            DesignLimitReached | TemplateChanged | RequestInProgress => 409,
            PreconditionFailed => 412,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            TemplateHasNoImages | IdempotencyKeyReused => 422,
            RateLimited => 429,
            StorageUnavailable | ObjectStoreUnavailable | RecommendationsUnavailable | Busy => 503,
            RecommendationsTimeout => 504,
            Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedJson => "malformed_json",
            InvalidRequest => "invalid_request",
            InvalidMultipart => "invalid_multipart",
            InvalidId => "invalid_id",
            MissingAuth => "missing_auth",
            InvalidAuth => "invalid_auth",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            TemplateNotFound => "template_not_found",
            DesignNotFound => "design_not_found",
            CompanyNotFound => "company_not_found",
            ApiKeyNotFound => "api_key_not_found",
            DesignLimitReached => "design_limit_reached",
            TemplateChanged => "template_changed",
            RequestInProgress => "request_in_progress",
            PreconditionFailed => "precondition_failed",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            TemplateHasNoImages => "template_has_no_images",
            IdempotencyKeyReused => "idempotency_key_reused",
            RateLimited => "rate_limited",
            StorageUnavailable => "storage_unavailable",
            ObjectStoreUnavailable => "object_store_unavailable",
            RecommendationsUnavailable => "recommendations_unavailable",
            RecommendationsTimeout => "recommendations_timeout",
            Busy => "busy",
            Internal => "internal",
        }
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
    fn serde_name_matches_as_str_and_bad_input_is_never_5xx() {
        use ErrorCode::*;
        let all = [
            MalformedJson,
            InvalidRequest,
            InvalidMultipart,
            InvalidId,
            MissingAuth,
            InvalidAuth,
            Forbidden,
            NotFound,
            MethodNotAllowed,
            TemplateNotFound,
            DesignNotFound,
            CompanyNotFound,
            ApiKeyNotFound,
            DesignLimitReached,
            TemplateChanged,
            RequestInProgress,
            PreconditionFailed,
            PayloadTooLarge,
            UnsupportedMediaType,
            TemplateHasNoImages,
            IdempotencyKeyReused,
            RateLimited,
            StorageUnavailable,
            ObjectStoreUnavailable,
            RecommendationsUnavailable,
            RecommendationsTimeout,
            Busy,
            Internal,
        ];
        for code in all {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let dependency_fault = matches!(
                code,
                StorageUnavailable
                    | ObjectStoreUnavailable
                    | RecommendationsUnavailable
                    | RecommendationsTimeout
                    | Busy
                    | Internal
            );
            // `busy` is this replica's own capacity, never bad input.
            assert_eq!(code.status() >= 500, dependency_fault, "{code:?}");
        }
    }
}
