//! Multipart uploads of templates: an optional `metadata` part (JSON) and one
//! `image` part per image, in order.
//!
//! Images stream to S3 as they arrive ([`prewarm_store::object_upload`]): a
//! request holds at most one multipart part in memory, and each image being
//! written holds one part's share of a process-wide budget
//! (`server.max_upload_bytes_in_flight`, [`UploadBudget`]); an upload that
//! gets no share within `server.upload_budget_wait_ms` is refused with 503
//! `busy` and `Retry-After`; a body silent for
//! [`UPLOAD_IDLE_TIMEOUT`], or still arriving `server.max_upload_secs` after
//! it began, is refused with 408. Each image is announced to the garbage
//! collector before its first byte is written (and the earlier images'
//! announcements renewed), and the save that commits the template takes the
//! announcements over in its transaction, refusing if any had expired
//! (`templates::insert`), so no template can point at a collected image.
//! Sizes are enforced while
//! streaming; a body over the limit is drained (up to a hard cap) so the
//! client reads a clean 413 instead of a reset connection. On any failure the
//! objects already written are deleted. The request is hashed on the way
//! (for `Idempotency-Key`).

use shared_domain::error::Chain;
use std::sync::Arc;

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use shared_domain::error::ErrorCode;
use shared_domain::ids::{CompanyId, TemplateId};
use shared_domain::image_type;
use shared_domain::object_keys;
use shared_domain::template::{TemplateImage, MAX_IMAGES};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prewarm_store::db::Db;
use prewarm_store::objects::ObjectStore;
use prewarm_store::pause::PausePoints;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::idempotency::RequestHasher;
use crate::settings::{ServerSettings, UPLOAD_ANNOUNCE_TTL, UPLOAD_SHARE_BYTES};

/// The parsed parts of an upload; the images are already in S3.
#[derive(Debug, Default)]
pub struct Upload {
    /// Owner of the images' announcement (`pending_copies`): until it is
    /// forgotten, the garbage collector keeps them even if no template
    /// holds them yet.
    pub id: uuid::Uuid,
    pub metadata: Option<Bytes>,
    pub images: Vec<TemplateImage>,
    /// SHA-256 of the route, the metadata and each image (type and bytes).
    pub request_hash: Vec<u8>,
}

impl Upload {
    /// The images for the save that commits them, with the announcement
    /// it takes over.
    pub fn saved(&self) -> prewarm_store::db::templates::Uploaded<'_> {
        prewarm_store::db::templates::Uploaded {
            announcement: self.id,
            images: &self.images,
        }
    }
}

const MAX_METADATA_BYTES: usize = 256 * 1024;

/// The most parts an upload may have: its images, its metadata, and a few
/// others (refused, but read).
pub const MAX_PARTS: usize = MAX_IMAGES + 8;

/// The most raw body bytes an upload may send: twice its content limit (the
/// drain's hard cap) and 1 MiB for headers and boundaries.
fn raw_body_cap(max_upload_bytes: usize) -> usize {
    max_upload_bytes
        .saturating_mul(2)
        .saturating_add(1024 * 1024)
}

/// What an upload needs of the service, borrowed from its state.
#[derive(Clone, Copy)]
pub struct Uploads<'a> {
    pub db: &'a Db,
    pub objects: &'a ObjectStore,
    pub limits: &'a ServerSettings,
    pub budget: &'a UploadBudget,
    pub pause: &'a PausePoints,
}

/// Upload bytes held in memory by this process, over every request. An
/// image being written holds one part's worth (a part plus one chunk) from
/// its first byte to its last -- all of it at once, so two uploads can never
/// each hold half of what both need and wait for each other. One company
/// holds at most a quarter of the shares (at least one), and waits for its
/// own as for the process's; its second share and beyond are refused while
/// no more than a quarter is free, which stays for companies holding none:
/// tenants trickling many slow uploads cannot take the whole budget from
/// the others, alone or together.
pub struct UploadBudget {
    kib: Arc<Semaphore>,
    wait: Duration,
    companies: Arc<Mutex<HashMap<CompanyId, CompanyShares>>>,
    per_company: usize,
}

/// A company's shares: its own semaphore, and how many reservations use it
/// (the entry goes when none does).
#[derive(Debug)]
struct CompanyShares {
    shares: Arc<Semaphore>,
    users: usize,
}

/// One image's share of the budget, counted against its company until dropped.
#[derive(Debug)]
pub struct Share {
    _permit: OwnedSemaphorePermit,
    _company_permit: OwnedSemaphorePermit,
    _user: CompanyUser,
}

/// A reservation's use of its company's entry.
#[derive(Debug)]
struct CompanyUser {
    company: CompanyId,
    companies: Arc<Mutex<HashMap<CompanyId, CompanyShares>>>,
}

impl Drop for CompanyUser {
    fn drop(&mut self) {
        let mut companies = self.companies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = companies.get_mut(&self.company) {
            entry.users -= 1;
            if entry.users == 0 {
                companies.remove(&self.company);
            }
        }
    }
}

/// What one image being written holds of the budget, in KiB.
const PART_KIB: u32 = (UPLOAD_SHARE_BYTES / 1024) as u32;

impl UploadBudget {
    /// `max_bytes` in flight; an upload waits up to `wait` for its share.
    pub fn new(max_bytes: usize, wait: Duration) -> Self {
        let shares = max_bytes / 1024 / PART_KIB as usize;
        Self {
            kib: Arc::new(Semaphore::new(max_bytes / 1024)),
            wait,
            companies: Arc::default(),
            per_company: (shares / 4).max(1),
        }
    }

    /// One image's share for `company`, or 503 `busy` after waiting `wait`
    /// for it (its company's quarter first, then the process's budget).
    async fn reserve(&self, company: CompanyId) -> Result<Share, ApiError> {
        let (own, user) = {
            let mut companies = self.companies.lock().unwrap_or_else(|e| e.into_inner());
            let entry = companies.entry(company).or_insert_with(|| CompanyShares {
                shares: Arc::new(Semaphore::new(self.per_company)),
                users: 0,
            });
            entry.users += 1;
            let user = CompanyUser {
                company,
                companies: self.companies.clone(),
            };
            (entry.shares.clone(), user)
        };
        // `None`: refused (its share would eat the companies' quarter, or
        // the budget closed) -- busy, like a wait that ran out.
        let acquire = async {
            let company_permit = own.clone().acquire_owned().await.ok()?;
            // A company's second share and beyond leave a quarter of the
            // budget to companies holding none: several greedy companies
            // together cannot take it all.
            let held = self.per_company - own.available_permits();
            let free = self.kib.available_permits() / PART_KIB as usize;
            if held > 1 && free <= self.per_company {
                return None;
            }
            let permit = self.kib.clone().acquire_many_owned(PART_KIB).await.ok()?;
            Some((permit, company_permit))
        };
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Some((permit, company_permit))) => Ok(Share {
                _permit: permit,
                _company_permit: company_permit,
                _user: user,
            }),
            _ => Err(busy()),
        }
    }
}

fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::Busy,
        "this replica has too many upload bytes in flight; retry",
    )
    .retry_after(2)
}

fn multipart_error(e: MultipartError) -> ApiError {
    let text = e.to_string();
    match e {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("expected Content-Type: multipart/form-data ({text})"),
        ),
        MultipartError::Payload(actix_web::error::PayloadError::Overflow) => ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the upload body is larger than its limit",
        ),
        _ => ApiError::new(ErrorCode::InvalidMultipart, text),
    }
}

/// The longest a request may send no byte of its body: a client trickling
/// an upload cannot hold its share of the byte budget for long.
pub const UPLOAD_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// When a request's body must have ended (`server.max_upload_secs` after
/// it began).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    secs: u64,
}

impl Deadline {
    /// The next item of a body stream, or 408 after [`UPLOAD_IDLE_TIMEOUT`]
    /// of silence or at the whole body's deadline, whichever comes first.
    async fn next<T>(self, next: impl std::future::Future<Output = T>) -> Result<T, ApiError> {
        let idle = tokio::time::Instant::now() + UPLOAD_IDLE_TIMEOUT;
        match tokio::time::timeout_at(idle.min(self.at), next).await {
            Ok(item) => Ok(item),
            Err(_) if tokio::time::Instant::now() >= self.at => Err(ApiError::new(
                ErrorCode::RequestTimeout,
                format!("the upload took longer than {} s", self.secs),
            )),
            Err(_) => Err(ApiError::new(
                ErrorCode::RequestTimeout,
                format!("no upload byte for {} s", UPLOAD_IDLE_TIMEOUT.as_secs()),
            )),
        }
    }
}

/// The next chunk of a part (see [`Deadline::next`]).
async fn next_chunk(field: &mut Field, deadline: Deadline) -> Result<Option<Bytes>, ApiError> {
    match deadline.next(field.next()).await? {
        Some(chunk) => chunk.map(Some).map_err(multipart_error),
        None => Ok(None),
    }
}

fn too_large(limit: usize, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("{what} larger than {limit} bytes"),
    )
}

/// Reads the whole multipart body under the configured limits, writing the
/// images of template `template` (of `company`) to S3. `check_metadata` runs as soon as the
/// metadata part is read (a bad one stores no image).
pub async fn read_upload(
    req: &HttpRequest,
    payload: web::Payload,
    up: Uploads<'_>,
    company: CompanyId,
    template: TemplateId,
    route: &str,
    check_metadata: impl Fn(&[u8]) -> Result<(), ApiError>,
) -> Result<Upload, ApiError> {
    let limits = up.limits;
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
    let mut reader = Reader {
        up,
        company,
        template,
        upload: Upload {
            id: uuid::Uuid::new_v4(),
            ..Upload::default()
        },
        hasher: RequestHasher::new(route),
        total: 0,
        rejected: None,
        deadline: Deadline {
            at: tokio::time::Instant::now() + Duration::from_secs(limits.max_upload_secs),
            secs: limits.max_upload_secs,
        },
    };
    let result = reader.read_all(req, payload, &check_metadata).await;
    let Reader {
        upload,
        hasher,
        rejected,
        ..
    } = reader;
    let failure = match result {
        Err(e) => Some(e),
        Ok(()) => rejected,
    };
    if let Some(e) = failure {
        discard(up, &upload).await;
        return Err(e);
    }
    Ok(Upload {
        request_hash: hasher.finish(),
        ..upload
    })
}

/// Deletes images written for a request that will not keep them, then
/// their announcement (if the delete fails, the announcement expires and
/// the garbage collector takes them).
pub async fn discard(up: Uploads<'_>, upload: &Upload) {
    let keys: Vec<String> = upload.images.iter().map(|i| i.object_key.clone()).collect();
    if !keys.is_empty() {
        if let Err(e) = up.objects.delete_many(&keys).await {
            tracing::warn!(error = %Chain(&e), "could not delete the images of a failed upload");
            return;
        }
    }
    settled(up.db, upload.id).await;
}

/// Drops an upload's announcement once its images are deleted (a saved
/// upload's is taken over by its save). A failure only delays the collector.
async fn settled(db: &Db, upload: uuid::Uuid) {
    let forgotten = match db.conn().await {
        Ok(mut conn) => prewarm_store::db::object_refs::forget(&mut conn, upload).await,
        Err(e) => Err(e),
    };
    if let Err(e) = forgotten {
        tracing::warn!(error = %Chain(&e), "could not drop an upload's announcement");
    }
}

struct Reader<'a> {
    up: Uploads<'a>,
    company: CompanyId,
    template: TemplateId,
    upload: Upload,
    hasher: RequestHasher,
    total: usize,
    /// Set once a limit is crossed; the rest is drained, not kept.
    rejected: Option<ApiError>,
    deadline: Deadline,
}

impl Reader<'_> {
    async fn read_all(
        &mut self,
        req: &HttpRequest,
        payload: web::Payload,
        check_metadata: &impl Fn(&[u8]) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        // Every byte of the body counts, headers and boundaries of empty
        // parts included (the limits below count part contents only).
        let cap = raw_body_cap(self.up.limits.max_upload_bytes);
        let mut seen = 0usize;
        let counted = payload.map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len();
            if seen > cap {
                return Err(actix_web::error::PayloadError::Overflow);
            }
            Ok(chunk)
        });
        let mut multipart = Multipart::new(req.headers(), counted);
        let mut parts = 0usize;
        while let Some(field) = self.deadline.next(multipart.next()).await? {
            let field = field.map_err(multipart_error)?;
            parts += 1;
            if parts > MAX_PARTS {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("at most {MAX_PARTS} parts per upload"),
                ));
            }
            let name = field.name().unwrap_or_default().to_string();
            match name.as_str() {
                "metadata" => {
                    let bytes = self.read_metadata(field).await?;
                    if self.rejected.is_none() {
                        if let Some(bytes) = bytes {
                            if let Err(e) = check_metadata(&bytes) {
                                self.rejected = Some(e);
                            }
                            self.hasher.part(b"metadata");
                            self.hasher.part(&bytes);
                            self.upload.metadata = Some(bytes);
                        }
                    }
                }
                "image" => self.read_image(field).await?,
                other => {
                    self.rejected.get_or_insert_with(|| {
                        ApiError::new(
                            ErrorCode::InvalidMultipart,
                            format!(
                                "unknown part `{other}`; expected `metadata` and `image` parts"
                            ),
                        )
                    });
                    self.drain(field).await?;
                }
            }
        }
        Ok(())
    }

    /// Counts a chunk against the request's limits; `false` once rejected.
    fn count(&mut self, len: usize) -> Result<bool, ApiError> {
        let limits = self.up.limits;
        self.total += len;
        if self.total > limits.max_upload_bytes.saturating_mul(2) {
            return Err(self
                .rejected
                .take()
                .unwrap_or_else(|| too_large(limits.max_upload_bytes, "upload")));
        }
        if self.rejected.is_none() && self.total > limits.max_upload_bytes {
            self.rejected = Some(too_large(limits.max_upload_bytes, "upload"));
        }
        Ok(self.rejected.is_none())
    }

    async fn drain(&mut self, mut field: Field) -> Result<(), ApiError> {
        while let Some(chunk) = next_chunk(&mut field, self.deadline).await? {
            self.count(chunk.len())?;
        }
        Ok(())
    }

    async fn read_metadata(&mut self, mut field: Field) -> Result<Option<Bytes>, ApiError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = next_chunk(&mut field, self.deadline).await? {
            if !self.count(chunk.len())? {
                continue;
            }
            if buf.len() + chunk.len() > MAX_METADATA_BYTES {
                self.rejected = Some(too_large(MAX_METADATA_BYTES, "metadata"));
            } else {
                buf.extend_from_slice(&chunk);
            }
        }
        Ok(self.rejected.is_none().then(|| buf.freeze()))
    }

    async fn read_image(&mut self, mut field: Field) -> Result<(), ApiError> {
        let position = self.upload.images.len();
        let Some(accepted) = self.admit(&field, position) else {
            return self.drain(field).await;
        };
        // This image's share of the process's budget, until its last byte
        // is sent; none left: refused, and the rest drained so the client
        // reads a clean 503.
        let _share = match self.up.budget.reserve(self.company).await {
            Ok(share) => share,
            Err(busy) => {
                self.rejected = Some(busy);
                return self.drain(field).await;
            }
        };
        let key = object_keys::template_image(self.template);
        self.announce(position, &key).await?;
        // Stored with the type its bytes were recognised as (the declared
        // one, checked): nothing is written before the first bytes are.
        let mut object = self.up.objects.upload(&key, accepted);
        let mut image_hash = RequestHasher::new("image");
        image_hash.part(accepted.as_bytes());
        let outcome = self
            .stream_image(&mut field, position, accepted, &mut object, &mut image_hash)
            .await;
        if outcome.is_err() || self.rejected.is_some() {
            object.abort().await;
            // The stream was read to its end (draining once rejected).
            return outcome;
        }
        let size = object.finish().await?;
        self.up
            .pause
            .reach(prewarm_store::pause::at::UPLOAD_STORED)
            .await;
        self.hasher.part(b"image");
        self.hasher.part(&image_hash.finish());
        self.upload.images.push(TemplateImage {
            position: position as i32,
            object_key: key,
            content_type: accepted.to_string(),
            size_bytes: size as i64,
        });
        Ok(())
    }

    /// The image's declared type if it may be stored: an accepted type, and
    /// no more than [`MAX_IMAGES`] images. A refusal is kept for the answer
    /// (the first one wins) and the part is drained.
    fn admit(&mut self, field: &Field, position: usize) -> Option<&'static str> {
        let declared = field
            .content_type()
            .map(|m| m.essence_str().to_ascii_lowercase())
            .unwrap_or_default();
        let accepted = match image_type::check_declared(&declared) {
            Ok(accepted) => Some(accepted),
            Err(why) => {
                self.rejected
                    .get_or_insert_with(|| unsupported(position, &why));
                None
            }
        };
        if position >= MAX_IMAGES && self.rejected.is_none() {
            self.rejected = Some(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("at most {MAX_IMAGES} images per template"),
            ));
        }
        accepted.filter(|_| self.rejected.is_none())
    }

    /// Announces the image's key before any byte is written: the garbage
    /// collector never takes an image whose template is not committed yet.
    /// The earlier images' announcements are renewed with it, so a body of
    /// many images never outlives its first one's.
    async fn announce(&self, position: usize, key: &str) -> Result<(), ApiError> {
        let mut conn = self.up.db.conn().await?;
        if position > 0 {
            prewarm_store::db::object_refs::renew(&mut conn, self.upload.id, UPLOAD_ANNOUNCE_TTL)
                .await?;
        }
        prewarm_store::db::object_refs::announce(
            &mut conn,
            self.upload.id,
            &[key.to_string()],
            UPLOAD_ANNOUNCE_TTL,
        )
        .await?;
        Ok(())
    }

    /// Reads the part to its end into `object`: the first bytes checked
    /// against the declared type before any is written, every byte counted
    /// against the request's and the image's limits (once one is passed,
    /// the rest is read and dropped) and hashed.
    async fn stream_image(
        &mut self,
        field: &mut Field,
        position: usize,
        accepted: &'static str,
        object: &mut prewarm_store::object_upload::Upload,
        image_hash: &mut RequestHasher,
    ) -> Result<(), ApiError> {
        let max_image = self.up.limits.max_image_bytes;
        let mut head: Option<BytesMut> = Some(BytesMut::new());
        let mut size = 0usize;
        while let Some(chunk) = next_chunk(field, self.deadline).await? {
            if !self.count(chunk.len())? {
                continue;
            }
            if size + chunk.len() > max_image {
                self.rejected = Some(too_large(max_image, "image"));
                continue;
            }
            size += chunk.len();
            image_hash.stream(&chunk);
            match head.as_mut() {
                Some(buf) => {
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= image_type::SNIFF_BYTES {
                        self.recognise(position, accepted, head.take(), object)
                            .await?;
                    }
                }
                None => {
                    object.write(&chunk).await?;
                }
            }
        }
        if self.rejected.is_none() && head.is_some() {
            // A body shorter than the signature bytes.
            self.recognise(position, accepted, head.take(), object)
                .await?;
        }
        Ok(())
    }

    /// Checks an image's first bytes against its declared type, then writes
    /// them; a mismatch rejects the request (the rest is drained).
    async fn recognise(
        &mut self,
        position: usize,
        accepted: &'static str,
        head: Option<BytesMut>,
        object: &mut prewarm_store::object_upload::Upload,
    ) -> Result<(), ApiError> {
        let head = head.unwrap_or_default();
        match image_type::check_bytes(accepted, &head) {
            Ok(_) => {
                object.write(&head).await?;
            }
            Err(why) => {
                self.rejected = Some(unsupported(position, &why));
            }
        }
        Ok(())
    }
}

/// 415 for image part `position`.
fn unsupported(position: usize, why: &image_type::Refused) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("image part {position}: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_budget_lends_whole_shares_waits_briefly_and_takes_them_back() {
        let budget = UploadBudget::new(2 * UPLOAD_SHARE_BYTES + 1024, Duration::from_millis(50));
        let (x, y, z) = (CompanyId::new(), CompanyId::new(), CompanyId::new());
        let a = budget.reserve(x).await.unwrap();
        let b = budget.reserve(y).await.unwrap();
        let refused = budget.reserve(z).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        drop(a);
        let c = budget.reserve(z).await.unwrap();
        drop((b, c));
        assert_eq!(budget.kib.available_permits(), 2 * PART_KIB as usize + 1);
        assert!(
            budget.companies.lock().unwrap().is_empty(),
            "every share given back"
        );
    }

    #[tokio::test]
    async fn one_company_holds_at_most_a_quarter_of_the_shares() {
        let budget = UploadBudget::new(8 * UPLOAD_SHARE_BYTES, Duration::from_millis(50));
        let (greedy, other) = (CompanyId::new(), CompanyId::new());
        let first = budget.reserve(greedy).await.unwrap();
        let second = budget.reserve(greedy).await.unwrap();
        let refused = budget.reserve(greedy).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        // The others still find room; the greedy one again once one ends.
        let _theirs = budget.reserve(other).await.unwrap();
        drop(first);
        let _again = budget.reserve(greedy).await.unwrap();
        drop(second);
    }

    #[tokio::test]
    async fn greedy_companies_together_leave_a_quarter_to_the_others() {
        // 8 shares, at most 2 a company; seconds only while more than 2 are free.
        let budget = UploadBudget::new(8 * UPLOAD_SHARE_BYTES, Duration::from_millis(50));
        let greedy: Vec<CompanyId> = (0..4).map(|_| CompanyId::new()).collect();
        let mut held = Vec::new();
        for company in &greedy {
            held.push(budget.reserve(*company).await.unwrap());
        }
        // 4 free: two seconds fit, the third would eat into the reserve.
        held.push(budget.reserve(greedy[0]).await.unwrap());
        held.push(budget.reserve(greedy[1]).await.unwrap());
        let refused = budget.reserve(greedy[2]).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        // Newcomers still get their first share from the reserve.
        let _a = budget.reserve(CompanyId::new()).await.unwrap();
        let _b = budget.reserve(CompanyId::new()).await.unwrap();
        drop(held);
    }
}
