//! S3 objects through aws-sdk-s3: upload, copy (the expensive operation the
//! warm pool exists to hide), delete, and the bounded-parallel copy used by
//! both the worker's refill and the API's cold path.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::interceptors::InterceptorContext;
use aws_sdk_s3::config::retry::{ClassifyRetry, RetryAction, RetryConfig, RetryPartition};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Builder as S3ConfigBuilder, Credentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// How to reach the object store. Shared by both services' settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint URL; empty for AWS itself.
    #[serde(default)]
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    /// Static credentials; both empty = the default AWS credential chain
    /// (environment, profile, web identity / IRSA, container and instance
    /// metadata).
    #[serde(skip_serializing, default = "empty_secret")]
    pub access_key_id: SecretString,
    #[serde(skip_serializing, default = "empty_secret")]
    pub secret_access_key: SecretString,
    /// `auto` (path-style with an `endpoint`, virtual-hosted on AWS), `path`
    /// (`endpoint/bucket/key`, most S3 look-alikes) or `virtual`.
    #[serde(default)]
    pub addressing: Addressing,
    /// Server-side encryption of every object written (puts and copies):
    /// empty (the bucket's default), `AES256` or `aws:kms`.
    #[serde(default)]
    pub server_side_encryption: String,
    /// With `aws:kms`: the KMS key id or ARN (empty: the AWS-managed key).
    #[serde(default)]
    pub sse_kms_key_id: String,
    /// Deadline for one S3 call, retries included.
    #[serde(default = "default_operation_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// Attempts per call (the SDK's standard retry with jittered backoff).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl S3Settings {
    /// Path-style URLs (`endpoint/bucket/key`)? `auto`: only with an
    /// endpoint (S3 look-alikes); AWS itself gets virtual-hosted URLs.
    pub fn path_style(&self) -> bool {
        match self.addressing {
            Addressing::Auto => !self.endpoint.is_empty(),
            Addressing::Path => true,
            Addressing::Virtual => false,
        }
    }
}

/// How bucket and key go into the URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    #[default]
    Auto,
    Path,
    Virtual,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_operation_timeout_ms() -> u64 {
    10_000
}
fn default_max_attempts() -> u32 {
    3
}

#[derive(Debug, thiserror::Error)]
#[error("s3 {op} {key}: {message}")]
pub struct ObjectError {
    pub op: &'static str,
    pub key: String,
    pub message: String,
}

pub(crate) fn err<E: std::fmt::Debug>(op: &'static str, key: &str, e: E) -> ObjectError {
    ObjectError {
        op,
        key: key.to_string(),
        message: format!("{e:?}").chars().take(400).collect(),
    }
}

/// A bucket, and the client to reach it.
#[derive(Clone)]
pub struct ObjectStore {
    pub(crate) client: Client,
    pub(crate) bucket: String,
    pub(crate) encryption: Option<(ServerSideEncryption, Option<String>)>,
}

impl ObjectStore {
    /// The client for `settings`. Without static keys, credentials come
    /// from the default AWS chain (resolved, and refreshed, by the SDK).
    pub async fn new(settings: &S3Settings) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let timeout = Duration::from_millis(settings.operation_timeout_ms);
        let static_keys = !settings.access_key_id.expose_secret().is_empty();
        let mut builder = if static_keys {
            S3ConfigBuilder::new()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(Credentials::new(
                    settings.access_key_id.expose_secret(),
                    settings.secret_access_key.expose_secret(),
                    None,
                    None,
                    "prewarm-settings",
                ))
        } else {
            let shared = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http.clone())
                .region(Region::new(settings.region.clone()))
                .load()
                .await;
            S3ConfigBuilder::from(&shared)
        };
        let path_style = settings.path_style();
        builder = builder
            .region(Region::new(settings.region.clone()))
            .force_path_style(path_style)
            .http_client(http)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
            // This store's own retry quota (token bucket): the SDK's default
            // partition is shared by every client of the process, so one
            // store's failures (another test stack's, in the test process)
            // would spend the retries of all.
            .retry_partition(RetryPartition::custom("prewarm-s3").build())
            .retry_classifier(RetryRequestTimeout)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(timeout)
                    .operation_timeout(timeout * settings.max_attempts.max(1))
                    .build(),
            );
        if !settings.endpoint.is_empty() {
            builder = builder.endpoint_url(settings.endpoint.clone());
        }
        let encryption = (!settings.server_side_encryption.is_empty()).then(|| {
            (
                ServerSideEncryption::from(settings.server_side_encryption.as_str()),
                (!settings.sse_kms_key_id.is_empty()).then(|| settings.sse_kms_key_id.clone()),
            )
        });
        Self {
            client: Client::from_conf(builder.build()),
            bucket: settings.bucket.clone(),
            encryption,
        }
    }

    /// The server-side encryption objects are written with (`s3.*` settings).
    pub fn encryption(&self) -> Option<&ServerSideEncryption> {
        self.encryption.as_ref().map(|(sse, _)| sse)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// On a bucket this service created: a lifecycle rule that makes S3
    /// abort multipart uploads still incomplete a day after they began (the
    /// GC aborts them sooner; this catches what it never reaches). Best
    /// effort: a server without lifecycle support is logged, not fatal.
    async fn abort_incomplete_uploads_after_a_day(&self) {
        use aws_sdk_s3::types::{
            AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
            LifecycleRule, LifecycleRuleFilter,
        };
        let rule = LifecycleRule::builder()
            .id("prewarm-abort-incomplete-uploads")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build();
        let config =
            rule.and_then(|rule| BucketLifecycleConfiguration::builder().rules(rule).build());
        let set = match config {
            Ok(config) => self
                .client
                .put_bucket_lifecycle_configuration()
                .bucket(&self.bucket)
                .lifecycle_configuration(config)
                .send()
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = set {
            tracing::warn!(bucket = %self.bucket, error = %e, "could not set the bucket's lifecycle rule for incomplete uploads");
        }
    }

    /// Creates the bucket unless it exists (dev and tests; production buckets
    /// are provisioned outside the app).
    pub async fn ensure_bucket(&self) -> Result<(), ObjectError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => {
                self.abort_incomplete_uploads_after_a_day().await;
                Ok(())
            }
            Err(e) => {
                let owned = e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                });
                if owned {
                    Ok(())
                } else {
                    Err(err("create_bucket", &self.bucket, e))
                }
            }
        }
    }

    pub async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), ObjectError> {
        let (sse, kms_key) = self.encryption.clone().unzip();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key.flatten())
            .send()
            .await
            .map_err(|e| err("put", key, e))?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| err("get", key, e))?;
        let data = out.body.collect().await.map_err(|e| err("get", key, e))?;
        Ok(data.into_bytes())
    }

    /// Server-side copy within the bucket.
    pub async fn copy(&self, source: &str, dest: &str) -> Result<(), ObjectError> {
        let (sse, kms_key) = self.encryption.clone().unzip();
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{}", self.bucket, source))
            .key(dest)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key.flatten())
            .send()
            .await
            .map_err(|e| err("copy", dest, e))?;
        Ok(())
    }

    pub async fn exists(&self, key: &str) -> Result<bool, ObjectError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(err("head", key, e)),
        }
    }

    /// Whether S3 answers for the bucket, with no permission beyond the
    /// service's own (no ListBucket): a HEAD of a key that does not exist is
    /// 404 with ListBucket and 403 without it -- either way S3 answered.
    pub async fn reachable(&self) -> Result<(), ObjectError> {
        const PROBE: &str = "readyz-probe";
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(PROBE)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 403 | 404)) =>
            {
                Ok(())
            }
            Err(e) => Err(err("head", PROBE, e)),
        }
    }

    /// Deletes keys in batches of 1,000 (S3's limit per call). Missing keys are fine.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), ObjectError> {
        match self.delete_each(keys).await?.into_iter().next() {
            Some((key, message)) => Err(err("delete", &key, message)),
            None => Ok(()),
        }
    }

    /// Deletes `keys`, answering the ones that could not be deleted with
    /// why (a key the bucket's policy protects, one its server cannot take
    /// in a batch's XML). A batch refused whole as a client error (4xx) is
    /// tried again key by key, so one bad key fails alone; an error of the
    /// store itself (5xx after the retries, no answer) fails the call.
    pub async fn delete_each(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        let mut failed = Vec::new();
        for chunk in keys.chunks(1000) {
            match self.delete_batch(chunk).await {
                Ok(errors) => failed.extend(errors),
                Err(BatchRefused::Client(e)) => {
                    tracing::debug!(error = %e, keys = chunk.len(), "a batch delete was refused; deleting its keys one by one");
                    for key in chunk {
                        let deleted = self
                            .client
                            .delete_object()
                            .bucket(&self.bucket)
                            .key(key)
                            .send()
                            .await;
                        if let Err(e) = deleted {
                            failed.push((key.clone(), err("delete", key, e).to_string()));
                        }
                    }
                }
                Err(BatchRefused::Store(e)) => return Err(e),
            }
        }
        Ok(failed)
    }

    /// One `DeleteObjects` call: the keys it could not delete, with why.
    async fn delete_batch(&self, chunk: &[String]) -> Result<Vec<(String, String)>, BatchRefused> {
        let objects = chunk
            .iter()
            .map(|k| {
                ObjectIdentifier::builder()
                    .key(k)
                    .build()
                    .map_err(|e| err("delete", k, e))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(BatchRefused::Client)?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| BatchRefused::Client(err("delete", &chunk[0], e)))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| {
                let client = e
                    .raw_response()
                    .is_some_and(|r| r.status().is_client_error());
                let e = err("delete", &chunk[0], e);
                if client {
                    BatchRefused::Client(e)
                } else {
                    BatchRefused::Store(e)
                }
            })?;
        Ok(out
            .errors()
            .iter()
            .map(|e| {
                let key = e.key().unwrap_or_default().to_string();
                let why = format!(
                    "{}: {}",
                    e.code().unwrap_or("error"),
                    e.message().unwrap_or_default()
                );
                (key, why)
            })
            .collect())
    }
}

/// One page of a listing ([`ObjectStore::list_page`]).
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Keys and their last-modified times (seconds since the epoch), in key order.
    pub objects: Vec<(String, i64)>,
    /// More keys follow the last one.
    pub truncated: bool,
}

/// Why a `DeleteObjects` call failed as a whole.
enum BatchRefused {
    /// The request was refused (4xx, or not buildable): its keys may go one
    /// by one.
    Client(ObjectError),
    /// The store failed it (5xx after retries, no answer).
    Store(ObjectError),
}

impl ObjectStore {
    /// Every key under `prefix` (tests and the garbage collector).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        Ok(self
            .list_modified(prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Every key under `prefix` with its last-modified time (seconds since the epoch).
    pub async fn list_modified(&self, prefix: &str) -> Result<Vec<(String, i64)>, ObjectError> {
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(prefix, after.as_deref(), 1_000).await?;
            after = page.objects.last().map(|(k, _)| k.clone());
            let done = !page.truncated || after.is_none();
            keys.extend(page.objects);
            if done {
                return Ok(keys);
            }
        }
    }

    /// One listing page: up to `max` keys under `prefix` that sort after
    /// `start_after`, with their last-modified times. A caller resumes from
    /// the last key it saw (a key, unlike a continuation token, can be
    /// stored and stays valid across restarts). The listing goes on past it
    /// while `truncated` (the server's word, not a full page: a server may
    /// answer fewer than `max` keys with more to come).
    pub async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: i32,
    ) -> Result<ListPage, ObjectError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .max_keys(max)
            .send()
            .await
            .map_err(|e| err("list", prefix, e))?;
        let objects: Vec<(String, i64)> = page
            .contents()
            .iter()
            .filter_map(|o| {
                let modified = o.last_modified().map_or(0, |t| t.secs());
                o.key().map(|k| (k.to_string(), modified))
            })
            .collect();
        // A server that does not say: a full page may have more after it.
        let truncated = page
            .is_truncated()
            .unwrap_or(objects.len() >= max.max(1) as usize);
        Ok(ListPage { objects, truncated })
    }

    /// Copies every `(source, dest)` pair, at most `parallelism` at a time for
    /// this call and, when given, within the process-wide `limiter`. Returns
    /// one result per pair, in order; the caller decides what a failure means.
    pub async fn copy_all(
        &self,
        pairs: &[(String, String)],
        parallelism: usize,
        limiter: Option<Arc<Semaphore>>,
    ) -> Vec<Result<(), ObjectError>> {
        // Owned futures (no borrowing closure inside the stream): keeps the
        // returned future `Send` for any caller lifetime.
        let copies: Vec<_> = pairs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, (source, dest))| {
                let store = self.clone();
                let limiter = limiter.clone();
                async move {
                    // A closed semaphore only happens at shutdown; copy anyway.
                    let _permit = match limiter {
                        Some(l) => l.acquire_owned().await.ok(),
                        None => None,
                    };
                    (i, store.copy(&source, &dest).await)
                }
            })
            .collect();
        let mut results: Vec<(usize, Result<(), ObjectError>)> = stream::iter(copies)
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }
}

/// Retries a bare `408 Request Timeout`: an S3-compatible server (or a
/// proxy before it) that closes a kept-alive connection as a request goes
/// out on it answers 408 without an S3 error code, which the SDK's own
/// classifiers (5xx, S3's `400 RequestTimeout`) leave unretried -- a
/// design's copy then failed for a connection's timing. Every request this
/// store makes may be sent again (copies and puts to the same key, deletes).
#[derive(Debug)]
struct RetryRequestTimeout;

impl ClassifyRetry for RetryRequestTimeout {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.response() {
            Some(response) if response.status().as_u16() == 408 => RetryAction::transient_error(),
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "408 Request Timeout"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, addressing: Addressing) -> S3Settings {
        S3Settings {
            endpoint: endpoint.into(),
            region: default_region(),
            bucket: "b".into(),
            access_key_id: empty_secret(),
            secret_access_key: empty_secret(),
            addressing,
            server_side_encryption: String::new(),
            sse_kms_key_id: String::new(),
            operation_timeout_ms: default_operation_timeout_ms(),
            max_attempts: default_max_attempts(),
        }
    }

    #[test]
    fn auto_addressing_is_virtual_hosted_on_aws_and_path_style_with_an_endpoint() {
        assert!(!settings("", Addressing::Auto).path_style());
        assert!(settings("http://127.0.0.1:9000", Addressing::Auto).path_style());
        assert!(settings("", Addressing::Path).path_style());
        assert!(!settings("http://minio:9000", Addressing::Virtual).path_style());
    }
}
