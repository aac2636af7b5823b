//! Streaming uploads and presigned reads of S3 objects.
//!
//! [`Upload`] writes an object of unknown length while it arrives: parts are
//! buffered up to [`PART_BYTES`] and sent as an S3 multipart upload, so an
//! upload never holds more than one part in memory; an object that ends
//! within its first part is sent with one PutObject. [`ObjectStore::presign_get`]
//! signs a time-limited GET URL.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};

use crate::objects::{err, ObjectError, ObjectStore};

/// The type presigned URLs make S3 answer with (see [`ObjectStore::presign_get`]).
pub const SAFE_CONTENT_TYPE: &str = "application/octet-stream";

/// Size of each multipart part (S3's minimum for every part but the last).
pub const PART_BYTES: usize = 5 * 1024 * 1024;

/// A multipart upload begun and never completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteUpload {
    pub key: String,
    pub upload_id: String,
    /// When it began, in seconds since the epoch.
    pub initiated: i64,
}

impl ObjectStore {
    /// Up to `max` incomplete multipart uploads of the bucket (one listing
    /// page): a process killed mid-upload leaves its parts, billed, until
    /// something aborts them.
    pub async fn incomplete_uploads(&self, max: i32) -> Result<Vec<IncompleteUpload>, ObjectError> {
        let page = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .max_uploads(max)
            .send()
            .await
            .map_err(|e| err("list_multipart_uploads", &self.bucket, e))?;
        Ok(page
            .uploads()
            .iter()
            .filter_map(|u| {
                Some(IncompleteUpload {
                    key: u.key()?.to_string(),
                    upload_id: u.upload_id()?.to_string(),
                    initiated: u.initiated().map_or(0, |t| t.secs()),
                })
            })
            .collect())
    }

    /// Aborts an incomplete multipart upload (its parts are deleted).
    pub async fn abort_incomplete(&self, upload: &IncompleteUpload) -> Result<(), ObjectError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map_err(|e| err("abort_multipart_upload", &upload.key, e))?;
        Ok(())
    }

    /// A GET URL for `key`, valid for `ttl` (at most 7 days). The URL makes
    /// S3 answer `Content-Type: application/octet-stream` and
    /// `Content-Disposition: attachment`, whatever type the object was
    /// stored with: a URL opened in a browser downloads instead of
    /// rendering, so no object (an SVG stored before uploads were checked,
    /// say) runs as active content on the bucket's origin, while `<img>`
    /// tags, which decode images by their bytes, show it as before.
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectError> {
        let config = PresigningConfig::expires_in(ttl).map_err(|e| err("presign", key, e))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type(SAFE_CONTENT_TYPE)
            .response_content_disposition("attachment")
            .presigned(config)
            .await
            .map_err(|e| err("presign", key, e))?;
        Ok(request.uri().to_string())
    }

    /// Starts writing `key` (see [`Upload`]).
    pub fn upload(&self, key: &str, content_type: &str) -> Upload {
        Upload {
            store: self.clone(),
            key: key.to_string(),
            content_type: content_type.to_string(),
            buffer: BytesMut::new(),
            multipart: None,
            size: 0,
        }
    }
}

/// One object being written (see the module docs). Give an unfinished one up
/// with [`Upload::abort`]; one dropped unfinished (its request's task was
/// cancelled) aborts its multipart upload from a task of its own, and what
/// a crash leaves the garbage collector aborts after its grace
/// (`ObjectStore::incomplete_uploads`).
pub struct Upload {
    store: ObjectStore,
    key: String,
    content_type: String,
    buffer: BytesMut,
    multipart: Option<(String, Vec<CompletedPart>)>,
    size: u64,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some((id, _)) = self.multipart.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, key) = (self.store.clone(), self.key.clone());
        runtime.spawn(async move {
            let aborted = store
                .client
                .abort_multipart_upload()
                .bucket(&store.bucket)
                .key(&key)
                .upload_id(id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(%key, error = ?e, "could not abort a dropped multipart upload");
            }
        });
    }
}

impl Upload {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in memory, waiting for a full part.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Adds bytes; sends a part once [`PART_BYTES`] are buffered. Returns
    /// how many buffered bytes were sent (and so freed).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<usize, ObjectError> {
        if self.buffer.capacity() == 0 {
            // One allocation per part (no doubling past the part size).
            self.buffer.reserve(PART_BYTES + chunk.len());
        }
        self.buffer.extend_from_slice(chunk);
        self.size += chunk.len() as u64;
        if self.buffer.len() < PART_BYTES {
            return Ok(0);
        }
        let part = std::mem::take(&mut self.buffer).freeze();
        let sent = part.len();
        self.send_part(part).await?;
        Ok(sent)
    }

    async fn send_part(&mut self, part: Bytes) -> Result<(), ObjectError> {
        if self.multipart.is_none() {
            let (sse, kms_key) = self.store.encryption.clone().unzip();
            let created = self
                .store
                .client
                .create_multipart_upload()
                .bucket(&self.store.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .set_server_side_encryption(sse)
                .set_ssekms_key_id(kms_key.flatten())
                .send()
                .await
                .map_err(|e| err("create_multipart", &self.key, e))?;
            let id = created
                .upload_id()
                .ok_or_else(|| err("create_multipart", &self.key, "no upload id"))?;
            self.multipart = Some((id.to_string(), Vec::new()));
        }
        let Some((id, parts)) = &mut self.multipart else {
            unreachable!("started above");
        };
        let number = parts.len() as i32 + 1;
        let out = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(id.as_str())
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| err("upload_part", &self.key, e))?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    /// Sends what is buffered and completes the object.
    pub async fn finish(mut self) -> Result<u64, ObjectError> {
        let rest = std::mem::take(&mut self.buffer).freeze();
        if self.multipart.is_none() {
            self.store.put(&self.key, rest, &self.content_type).await?;
            return Ok(self.size);
        }
        if !rest.is_empty() {
            if let Err(e) = self.send_part(rest).await {
                self.abort().await;
                return Err(e);
            }
        }
        let Some((id, parts)) = self.multipart.take() else {
            unreachable!("multipart checked above");
        };
        let completed = self
            .store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = completed {
            self.abort_upload(&id).await;
            return Err(err("complete_multipart", &self.key, e));
        }
        Ok(self.size)
    }

    /// Gives the object up: aborts a started multipart upload (nothing was
    /// completed, so no object exists).
    pub async fn abort(&mut self) {
        if let Some((id, _)) = self.multipart.take() {
            self.abort_upload(&id).await;
        }
    }

    async fn abort_upload(&self, id: &str) {
        let aborted = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(key = %self.key, error = ?e, "could not abort a multipart upload");
        }
    }
}
