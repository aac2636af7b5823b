//! A fault-injecting HTTP proxy: every request waits `delay` (plus up to
//! `jitter`), then is answered with an S3-style 503 with probability
//! `error_rate`, stalled past any client timeout with probability
//! `stall_rate`, or forwarded to the upstream. Faults can be changed while it
//! runs (the benchmark turns latency on after filling pools).
//!
//! `tc netem` has no kernel support on the machines this runs on, so latency
//! is injected here, per request, at the HTTP layer.
//!
//! It also times every CopyObject it forwards (injected latency plus the
//! upstream's service time), so a scenario can state what one copy cost
//! ([`FaultProxy::take_copy_times`]).

use std::net::TcpListener;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;

#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub delay: Duration,
    pub jitter: Duration,
    /// Share of requests answered 503 SlowDown without reaching the upstream.
    pub error_rate: f64,
    /// Share of requests held for `stall` before being dropped with a 504.
    pub stall_rate: f64,
    pub stall: Duration,
    /// Share of requests answered a bare `408 Request Timeout` with
    /// `Connection: close` and no S3 error code, without reaching the
    /// upstream: what an HTTP server timing out a kept-alive connection
    /// answers a request that arrives on it as it closes.
    pub timeout_rate: f64,
    /// Keys containing this text cannot be deleted, as under a bucket policy
    /// protecting them: a `DELETE` of one is answered 403 `AccessDenied`,
    /// a `DeleteObjects` batch naming one is refused whole with 400
    /// `MalformedXML` (what a server answers a batch it cannot read).
    pub protect: Option<String>,
}

/// A running proxy; dropping the handle does not stop it, `stop` does.
pub struct FaultProxy {
    pub port: u16,
    pub faults: Arc<RwLock<Faults>>,
    handle: ServerHandle,
    /// Requests seen, for reports.
    pub requests: Arc<std::sync::atomic::AtomicU64>,
    copy_times: Arc<Mutex<Histogram<u64>>>,
}

struct State {
    upstream: String,
    client: reqwest::Client,
    faults: Arc<RwLock<Faults>>,
    requests: Arc<std::sync::atomic::AtomicU64>,
    copy_times: Arc<Mutex<Histogram<u64>>>,
}

/// Microseconds, 1 µs to 10 min at 3 significant digits: a fixed size
/// whatever the number of copies timed.
fn copy_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl FaultProxy {
    /// Starts on `127.0.0.1:port` (0 = any free port) in front of `upstream`
    /// (e.g. `http://127.0.0.1:9000`).
    pub fn start(port: u16, upstream: &str, faults: Faults) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let faults = Arc::new(RwLock::new(faults));
        let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let copy_times = Arc::new(Mutex::new(copy_histogram()));
        let state = web::Data::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .build()
                .map_err(std::io::Error::other)?,
            faults: faults.clone(),
            requests: requests.clone(),
            copy_times: copy_times.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(256 * 1024 * 1024))
                .default_service(web::to(forward))
        })
        .workers(2)
        .max_connections(4096)
        .backlog(4096)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FaultProxy {
            port,
            faults,
            handle,
            requests,
            copy_times,
        })
    }

    /// The CopyObject calls forwarded since the last call (microseconds from
    /// the request's arrival to its answer), and starts counting afresh.
    pub fn take_copy_times(&self) -> Histogram<u64> {
        match self.copy_times.lock() {
            Ok(mut h) => std::mem::replace(&mut *h, copy_histogram()),
            Err(_) => copy_histogram(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, faults: Faults) {
        if let Ok(mut f) = self.faults.write() {
            *f = faults;
        }
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn forward(req: HttpRequest, body: Bytes, state: web::Data<State>) -> HttpResponse {
    // A CopyObject is a PUT naming its source in this header.
    let copy = req.headers().contains_key("x-amz-copy-source");
    let started = std::time::Instant::now();
    let response = forward_faulty(req, body, &state).await;
    if copy && response.status().is_success() {
        let us = (started.elapsed().as_micros() as u64).clamp(1, 600_000_000);
        if let Ok(mut h) = state.copy_times.lock() {
            let _ = h.record(us);
        }
    }
    response
}

async fn forward_faulty(req: HttpRequest, body: Bytes, state: &State) -> HttpResponse {
    state
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let faults = state.faults.read().map(|f| f.clone()).unwrap_or_default();
    let (delay, fail, stall, timeout) = {
        let mut rng = rand::rng();
        let jitter = if faults.jitter.is_zero() {
            Duration::ZERO
        } else {
            faults.jitter.mul_f64(rng.random::<f64>())
        };
        (
            faults.delay + jitter,
            rng.random::<f64>() < faults.error_rate,
            rng.random::<f64>() < faults.stall_rate,
            rng.random::<f64>() < faults.timeout_rate,
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if stall {
        tokio::time::sleep(faults.stall).await;
        return HttpResponse::GatewayTimeout().finish();
    }
    if timeout {
        return HttpResponse::RequestTimeout().force_close().finish();
    }
    if fail {
        return HttpResponse::ServiceUnavailable()
            .content_type("application/xml")
            .body("<Error><Code>SlowDown</Code><Message>injected fault</Message></Error>");
    }
    if let Some(protected) = faults.protect.as_deref() {
        let batch = req.method() == actix_web::http::Method::POST
            && req
                .query_string()
                .split('&')
                .any(|p| p == "delete" || p == "delete=");
        let named = if batch {
            String::from_utf8_lossy(&body).contains(protected)
        } else {
            req.method() == actix_web::http::Method::DELETE && req.path().contains(protected)
        };
        if named && batch {
            return HttpResponse::BadRequest()
                .content_type("application/xml")
                .body("<Error><Code>MalformedXML</Code><Message>injected fault</Message></Error>");
        }
        if named {
            return HttpResponse::Forbidden()
                .content_type("application/xml")
                .body("<Error><Code>AccessDenied</Code><Message>injected fault</Message></Error>");
        }
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut upstream = state
        .client
        .request(method, format!("{}{}", state.upstream, path));
    for (name, value) in req.headers() {
        // The client recomputes these for the upstream connection.
        if matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        upstream = upstream.header(name.as_str(), value.as_bytes());
    }
    match upstream.body(body).send().await {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut out = HttpResponse::build(status);
            for (name, value) in resp.headers() {
                if matches!(
                    name.as_str(),
                    "connection" | "content-length" | "transfer-encoding"
                ) {
                    continue;
                }
                out.insert_header((name.as_str(), value.as_bytes()));
            }
            match resp.bytes().await {
                Ok(bytes) => out.body(bytes),
                Err(e) => HttpResponse::BadGateway().body(e.to_string()),
            }
        }
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}
