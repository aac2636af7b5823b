//! Logs and traces.
//!
//! Logs: readable text in development, JSON lines in production (`log.*`).
//! Traces: OpenTelemetry spans exported over OTLP/HTTP when
//! `trace.otlp_endpoint` is set. The W3C trace context travels in HTTP
//! headers (`traceparent`) and in Kafka message headers ([`inject`] on the
//! producer, [`extract`] on the consumer), so one trace covers
//! request -> warm-up message -> refill. Spans carry a `trace_id` field
//! ([`record_trace_id`]), so every log line inside them names its trace.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default)]
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,template_api=debug`; `RUST_LOG` wins when set.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_level(),
        }
    }
}

/// How log lines are written (`log.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for a log pipeline).
    Json,
}

fn default_level() -> String {
    "info".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSettings {
    /// Base URL of an OTLP/HTTP collector, e.g. `http://otel-collector:4318`
    /// (spans go to `<url>/v1/traces`); empty: no tracing.
    pub otlp_endpoint: String,
    /// Share of new traces recorded, 0.0-1.0; a request whose caller sampled
    /// it is always recorded (parent-based).
    pub sample_ratio: f64,
    /// With an `https://` collector: a PEM bundle of the CA(s) to trust
    /// besides the system's roots (empty: the system's only).
    pub ca_file: String,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sample_ratio: 1.0,
            ca_file: String::new(),
        }
    }
}

impl TraceSettings {
    pub fn validate(&self) -> Result<(), config::ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(crate::invalid_setting::invalid(
                "trace.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        let e = &self.otlp_endpoint;
        if !e.is_empty() && !e.starts_with("http://") && !e.starts_with("https://") {
            return Err(crate::invalid_setting::invalid(
                "trace.otlp_endpoint",
                "must be an http(s) URL or empty",
            ));
        }
        Ok(())
    }
}

/// Whether [`init`] installed an exporter: spans leave the process.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports traces. A value that only a trace needs is
/// recorded on a span only then: recording a field on a span re-formats
/// all its fields for the JSON log (`tracing_subscriber`'s JSON fields are
/// kept as text), which costs a request a visible share of its CPU.
pub fn exports_traces() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keeps the tracer provider alive; dropping it flushes pending spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("flushing traces: {e}");
            }
        }
    }
}

/// Installs logging (and tracing when configured) for `service` once; later
/// calls (tests) leave the first subscriber in place.
pub fn init(log: &LogSettings, trace: &TraceSettings, service: &'static str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = if trace.otlp_endpoint.is_empty() {
        None
    } else {
        match tracer_provider(trace, service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("tracing disabled: cannot build the OTLP exporter: {e}");
                None
            }
        }
    };
    // Each layer has its own filter: the log level must not decide which
    // spans are traced.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let fmt = if log.format == LogFormat::Json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter).boxed()
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_filter(EnvFilter::new("info"))
    });
    let result = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    match result {
        Ok(()) => EXPORTING.store(provider.is_some(), std::sync::atomic::Ordering::Relaxed),
        Err(_) => tracing::debug!("logging was already initialised"),
    }
    Telemetry { provider }
}

fn tracer_provider(
    trace: &TraceSettings,
    service: &'static str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let endpoint = format!("{}/v1/traces", trace.otlp_endpoint.trim_end_matches('/'));
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint);
    if !trace.ca_file.is_empty() {
        builder = builder.with_http_client(
            otlp_client(&trace.ca_file)
                .map_err(opentelemetry_otlp::ExporterBuildError::InternalFailure)?,
        );
    }
    let exporter = builder.build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            trace.sample_ratio,
        ))))
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

/// The exporter's HTTP client when the collector's certificate chains to
/// `trace.ca_file`. Built on a thread of its own: a blocking client must not
/// be made (or dropped) inside the async runtime.
fn otlp_client(ca_file: &str) -> Result<reqwest::blocking::Client, String> {
    let ca_file = ca_file.to_string();
    std::thread::spawn(move || {
        let pem = std::fs::read(&ca_file).map_err(|e| format!("trace.ca_file {ca_file}: {e}"))?;
        let mut client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("trace.ca_file {ca_file}: {e}"))?
        {
            client = client.add_root_certificate(cert);
        }
        client.build().map_err(|e| format!("trace.ca_file: {e}"))
    })
    .join()
    .map_err(|_| "building the OTLP client panicked".to_string())?
}

/// Writes the span's trace id into its `trace_id` field (declared
/// `trace_id = tracing::field::Empty`), when it belongs to a real trace.
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
    }
}

/// The W3C trace headers (`traceparent`, `tracestate`) among `headers`,
/// lower-cased; nothing is allocated when there are none.
fn trace_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> HashMap<String, String> {
    headers
        .into_iter()
        .filter(|(k, _)| {
            k.eq_ignore_ascii_case("traceparent") || k.eq_ignore_ascii_case("tracestate")
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect()
}

/// Makes a remote caller's trace (W3C `traceparent`/`tracestate` carried in
/// `headers`) the parent of `span`.
pub fn adopt_parent<'a>(
    span: &tracing::Span,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    // Only the two W3C headers are read: this runs on every request, and
    // most carry neither.
    let carrier = trace_headers(headers);
    if carrier.is_empty() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&MapCarrier(carrier));
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started a trace of its own.
        let _ = span.set_parent(parent);
    }
}

tokio::task_local! {
    /// The caller's W3C trace context while its request is served.
    static CALLER_TRACE: Vec<(String, String)>;
}

/// The caller's trace context (`traceparent` and `tracestate`) among
/// `headers`, normalized; empty when it has no valid `traceparent`.
pub fn caller_trace<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    let carrier = trace_headers(headers);
    if carrier.is_empty() {
        return Vec::new();
    }
    let propagator = TraceContextPropagator::new();
    let parent = propagator.extract(&MapCarrier(carrier));
    if !parent.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut out = MapCarrier(HashMap::new());
    propagator.inject_context(&parent, &mut out);
    out.0.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// Runs `fut` (a request being served) with its caller's trace context at
/// hand: [`inject`] propagates it when this process traces nothing itself
/// (no exporter configured), since the W3C context is the caller's, not
/// ours to drop.
pub async fn with_caller_trace<F: std::future::Future>(
    trace: Vec<(String, String)>,
    fut: F,
) -> F::Output {
    CALLER_TRACE.scope(trace, fut).await
}

/// The current span's trace context as headers (`traceparent`,
/// `tracestate`); without a trace of this process's own (no exporter), the
/// caller's, as it came in ([`with_caller_trace`]); empty when neither.
pub fn inject() -> Vec<(String, String)> {
    let context = tracing::Span::current().context();
    let mut carrier = MapCarrier(HashMap::new());
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    if carrier.0.is_empty() {
        return current_caller_trace();
    }
    carrier
        .0
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// The caller's trace context of the request being served (empty outside
/// one): work detached from the request takes it along.
pub fn current_caller_trace() -> Vec<(String, String)> {
    CALLER_TRACE.try_with(Clone::clone).unwrap_or_default()
}

/// Alias of [`adopt_parent`] for owned header pairs (the consumer side).
pub fn extract(span: &tracing::Span, headers: &[(String, String)]) {
    adopt_parent(span, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

struct MapCarrier(HashMap<String, String>);

impl Injector for MapCarrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

impl Extractor for MapCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a tracer of this process's own, `inject` hands on the
    /// caller's context, normalized; a bad `traceparent` is not passed on.
    #[tokio::test]
    async fn the_callers_trace_is_handed_on_without_a_tracer() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let caller = caller_trace([("TraceParent", traceparent), ("x-other", "1")]);
        assert_eq!(
            caller,
            vec![("traceparent".to_string(), traceparent.to_string())]
        );
        let injected = with_caller_trace(caller, async { inject() }).await;
        assert_eq!(
            injected,
            vec![("traceparent".to_string(), traceparent.to_string())]
        );
        assert!(inject().is_empty(), "outside a request: nothing");
        assert!(caller_trace([("traceparent", "00-zz-00-01")]).is_empty());
    }

    /// A request's span joins the caller's trace whatever the header's case
    /// and whatever other headers come with it; without one it starts its own.
    #[test]
    fn a_span_adopts_the_callers_trace() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
            let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
            let span = tracing::info_span!("request");
            adopt_parent(
                &span,
                [
                    ("host", "x"),
                    ("TraceParent", traceparent.as_str()),
                    ("accept", "*/*"),
                ],
            );
            let trace_of =
                |span: &tracing::Span| span.context().span().span_context().trace_id().to_string();
            assert_eq!(trace_of(&span), trace);
            let own = tracing::info_span!("request");
            adopt_parent(&own, [("host", "x")]);
            assert_ne!(trace_of(&own), trace);
        });
    }
}
