//! Multipart uploads of templates: an optional `metadata` part (JSON) and one
//! `image` part per image, in order. Sizes are enforced while streaming; a
//! body over the limit is drained (up to a hard cap) so the client reads a
//! clean 413 instead of a reset connection.

use actix_multipart::{Multipart, MultipartError};
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use shared_domain::error::ErrorCode;
use shared_domain::template::MAX_IMAGES;

use crate::error::ApiError;
use crate::settings::ServerSettings;

/// One uploaded image, in memory.
#[derive(Debug)]
pub struct UploadedImage {
    pub content_type: String,
    pub data: Bytes,
}

/// The parsed parts of an upload.
#[derive(Debug, Default)]
pub struct Upload {
    pub metadata: Option<Bytes>,
    pub images: Vec<UploadedImage>,
}

const MAX_METADATA_BYTES: usize = 256 * 1024;

fn multipart_error(e: MultipartError) -> ApiError {
    let text = e.to_string();
    match e {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("expected Content-Type: multipart/form-data ({text})"),
        ),
        _ => ApiError::new(ErrorCode::InvalidMultipart, text),
    }
}

/// Reads the whole multipart body under the configured limits.
pub async fn read_upload(
    req: &HttpRequest,
    payload: web::Payload,
    limits: &ServerSettings,
) -> Result<Upload, ApiError> {
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limits.max_upload_bytes {
            return Err(too_large(limits.max_upload_bytes, "upload"));
        }
    }
    let mut multipart = Multipart::new(req.headers(), payload);
    let mut upload = Upload::default();
    let mut total = 0usize;
    // Set once a limit is crossed; the rest is drained, not kept.
    let mut rejected: Option<ApiError> = None;
    let hard_cap = limits.max_upload_bytes.saturating_mul(2);

    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(multipart_error)?;
        let name = field.name().unwrap_or_default().to_string();
        let content_type = field.content_type().map(|m| m.essence_str().to_string());
        let limit = match name.as_str() {
            "metadata" => MAX_METADATA_BYTES,
            "image" => limits.max_image_bytes,
            other => {
                rejected.get_or_insert_with(|| {
                    ApiError::new(
                        ErrorCode::InvalidMultipart,
                        format!("unknown part `{other}`; expected `metadata` and `image` parts"),
                    )
                });
                0
            }
        };
        if name == "image" {
            let is_image = content_type
                .as_deref()
                .is_some_and(|ct| ct.starts_with("image/"));
            if !is_image && rejected.is_none() {
                rejected = Some(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!(
                        "image part {} must have an image/* content type",
                        upload.images.len()
                    ),
                ));
            }
            if upload.images.len() >= MAX_IMAGES && rejected.is_none() {
                rejected = Some(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("at most {MAX_IMAGES} images per template"),
                ));
            }
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(multipart_error)?;
            total += chunk.len();
            if total > hard_cap {
                return Err(
                    rejected.unwrap_or_else(|| too_large(limits.max_upload_bytes, "upload"))
                );
            }
            if rejected.is_some() {
                continue;
            }
            if total > limits.max_upload_bytes {
                rejected = Some(too_large(limits.max_upload_bytes, "upload"));
            } else if buf.len() + chunk.len() > limit {
                rejected = Some(too_large(limit, &name));
            } else {
                buf.extend_from_slice(&chunk);
            }
        }
        if rejected.is_some() {
            continue;
        }
        match name.as_str() {
            "metadata" => upload.metadata = Some(buf.freeze()),
            "image" => upload.images.push(UploadedImage {
                content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
                data: buf.freeze(),
            }),
            _ => {}
        }
    }
    match rejected {
        Some(e) => Err(e),
        None => Ok(upload),
    }
}

fn too_large(limit: usize, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("{what} larger than {limit} bytes"),
    )
}
