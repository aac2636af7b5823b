//! One span per request: it continues the caller's trace (W3C `traceparent`),
//! is named after the route pattern, carries the trace id and the request id
//! (`X-Request-Id`: the caller's if sane, else a new one; echoed on every
//! response) into every log line written while serving the request, and ends
//! with one access-log line.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use prewarm_service_kit::telemetry::{
    adopt_parent, caller_trace, exports_traces, record_trace_id, with_caller_trace,
};
use tracing::field::Empty;
use tracing::Instrument;

const REQUEST_ID_HEADER: &str = "x-request-id";

/// The caller's `X-Request-Id` if it is a sane token (1-128 characters of
/// `A-Z a-z 0-9 . _ -`), else a new one.
fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = request_id_of(&req);
    let method = req.method().clone();
    // Named before routing (an OpenTelemetry span's name is fixed once its
    // context exists): the route table's pattern that matches the path.
    let route = route_of(req.path());
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = route,
        http.response.status_code = Empty,
        trace_id = Empty,
        request_id = %request_id,
    );
    let headers = || {
        req.headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
    };
    adopt_parent(&span, headers());
    let caller = caller_trace(headers());
    record_trace_id(&span);
    let path = req.path().to_string();
    let served = next.call(req).instrument(span.clone());
    let mut res =
        crate::request_id::scope(request_id.clone(), with_caller_trace(caller, served)).await?;
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(REQUEST_ID_HEADER),
            value,
        );
    }
    let status = res.status().as_u16();
    // For the trace only: the access line below carries `status`, and a
    // record re-formats the span's fields for a JSON log (5 % of the API's
    // CPU per warm design at `info`, docs/benchmarks.md).
    if exports_traces() {
        span.record("http.response.status_code", status);
    }
    if path != "/healthz" && path != "/readyz" && path != "/metrics" {
        span.in_scope(|| {
            tracing::info!(
                status,
                latency_ms = started.elapsed().as_secs_f64() * 1e3,
                "{method} {path}"
            )
        });
    }
    Ok(res)
}

/// The route pattern serving `path` (`/templates/{id}`), or `unmatched`.
/// Matched segment by segment, as actix matches these patterns (a `{name}`
/// segment is any non-empty segment): no regex on every request.
fn route_of(path: &str) -> &'static str {
    crate::routes::ROUTES
        .iter()
        .map(|(_, pattern)| *pattern)
        .find(|pattern| matches_pattern(pattern, path))
        .unwrap_or("unmatched")
}

fn matches_pattern(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_map_to_their_route_patterns() {
        let id = "0192a0c4-0000-7000-8000-000000000000";
        assert_eq!(super::route_of("/designs"), "/designs");
        assert_eq!(
            super::route_of(&format!("/templates/{id}")),
            "/templates/{id}"
        );
        assert_eq!(
            super::route_of(&format!("/templates/{id}/similar")),
            "/templates/{id}/similar"
        );
        assert_eq!(super::route_of("/nope"), "unmatched");
        assert_eq!(super::route_of("/templates//similar"), "unmatched");
        assert_eq!(super::route_of("/designs/"), "unmatched");
        assert_eq!(
            super::route_of(&format!("/admin/api-keys/{id}/rotate")),
            "/admin/api-keys/{id}/rotate"
        );
    }

    /// The hand matcher agrees with actix's own on every pattern and a set
    /// of paths around them.
    #[test]
    fn the_segment_matcher_agrees_with_actix() {
        let paths = [
            "/",
            "/designs",
            "/designs/",
            "/designs/x",
            "/designs/x/y",
            "/templates/a/similar",
            "/templates//similar",
            "/templates/a/b",
            "/admin/companies/c/api-keys",
            "/healthz/",
            "//designs",
            "/admin/api-keys/k/rotate",
            "/admin/api-keys/k/rotate/",
        ];
        for (_, pattern) in crate::routes::ROUTES {
            let def = actix_web::dev::ResourceDef::new(*pattern);
            for path in paths {
                assert_eq!(
                    super::matches_pattern(pattern, path),
                    def.is_match(path),
                    "{pattern} vs {path}"
                );
            }
        }
    }
}
