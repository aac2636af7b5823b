//! The id of the request being served, carried by a task-local: the error
//! bodies quote it, the log lines carry it, and work detached from the
//! request keeps it. A leaf: it imports nothing from this crate.

use futures::FutureExt;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served (`None` outside a request).
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `work` as the request `id`.
pub async fn scope<T>(id: String, work: impl std::future::Future<Output = T>) -> T {
    REQUEST_ID.scope(id, work).await
}

/// Runs `work` on a task of its own that finishes even if the request is
/// dropped (the client went away), still in the request's span, with its
/// request id and its caller's trace context; the request awaits it.
pub async fn detached<T: 'static>(
    work: impl std::future::Future<Output = T> + 'static,
) -> Result<T, tokio::task::JoinError> {
    let span = tracing::Span::current();
    let trace = prewarm_service_kit::telemetry::current_caller_trace();
    let work = prewarm_service_kit::telemetry::with_caller_trace(trace, work);
    let task = match current_request_id() {
        Some(id) => actix_web::rt::spawn(REQUEST_ID.scope(id, work.instrument(span)).boxed_local()),
        None => actix_web::rt::spawn(work.instrument(span).boxed_local()),
    };
    task.await
}
