//! The one place where failures become HTTP responses: every error is
//! `{"error": {"code", "message", "request_id"}}` with the status from
//! `ErrorCode::status`. A 5xx's message is generic; its details are logged
//! with the request id.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use prewarm_store::db::StoreError;
use shared_domain::error::{ErrorBody, ErrorCode, ErrorDetail};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra response headers (`Retry-After`, `RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Adds `Retry-After` (whole seconds, at least 1).
    pub fn retry_after(self, secs: u64) -> Self {
        self.with_header("retry-after", secs.max(1))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let request_id = crate::request_id::current_request_id();
        // A 5xx's details (database, S3, upstream addresses and errors) go to
        // the log with the request id; the client gets a generic message.
        let message = if self.code.status() >= 500 {
            tracing::error!(
                code = self.code.as_str(),
                message = %self.message,
                request_id = request_id.as_deref().unwrap_or(""),
                "request failed"
            );
            opaque_message(self.code).to_string()
        } else {
            self.message.clone()
        };
        let mut response = HttpResponse::build(self.status_code());
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message,
                request_id,
            },
        })
    }
}

/// What a client reads for a 5xx: which dependency failed, nothing more.
fn opaque_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::StorageUnavailable => "the database is unavailable; retry later",
        ErrorCode::ObjectStoreUnavailable => "the object store is unavailable; retry later",
        ErrorCode::RecommendationsUnavailable => {
            "the recommendation service is unavailable; retry later"
        }
        ErrorCode::RecommendationsTimeout => "the recommendation service did not answer in time",
        _ => "internal error; quote the request id when reporting it",
    }
}

impl From<shared_domain::valid::Invalid> for ApiError {
    fn from(e: shared_domain::valid::Invalid) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    /// The message of a 5xx is the whole error chain: it goes to the log,
    /// never to the client (`error_response`).
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::NotFound => return ApiError::new(ErrorCode::NotFound, "not found"),
            StoreError::Unavailable { .. } => ErrorCode::StorageUnavailable,
            StoreError::Conflict(_) | StoreError::Migration { .. } | StoreError::Query(_) => {
                ErrorCode::Internal
            }
        };
        ApiError::new(code, prewarm_store::db::error_chain(&e))
    }
}

impl From<prewarm_store::objects::ObjectError> for ApiError {
    fn from(e: prewarm_store::objects::ObjectError) -> Self {
        ApiError::new(ErrorCode::ObjectStoreUnavailable, e.to_string())
    }
}

/// JSON body errors: too large is 413, wrong content type 415, the rest 400.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as J;
    match err {
        J::Overflow { limit } | J::OverflowKnownLength { limit, .. } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("JSON body larger than {limit} bytes"),
        ),
        J::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        J::Deserialize(e) if e.is_data() => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
        J::Deserialize(e) => ApiError::new(ErrorCode::MalformedJson, e.to_string()),
        other => ApiError::new(ErrorCode::MalformedJson, other.to_string()),
    }
}

/// Path errors (a segment that is not a UUID, say).
pub fn path_error(err: actix_web::error::PathError) -> ApiError {
    ApiError::new(ErrorCode::InvalidId, err.to_string())
}

/// Query-string errors.
pub fn query_error(err: actix_web::error::QueryPayloadError) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, err.to_string())
}
