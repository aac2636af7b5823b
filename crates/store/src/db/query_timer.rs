//! Every query a span and a duration: a diesel [`Instrumentation`] set on
//! each pooled connection when it is opened, so no call site has to wrap
//! its queries (and none can forget to).
//!
//! diesel-async reports a query's start when its future is built (inside
//! the caller's span, which becomes the query span's parent) and its finish
//! when the answer is in. A connection runs one statement at a time here,
//! so one slot holds the query in flight; a query whose future was dropped
//! before its answer (a timeout) leaves its slot to be overwritten by the
//! next, never shifting later pairs.
//!
//! The metric's `statement` label names the statement by its verb and its
//! table or function ("select pool_items", "call prewarm_claim_item"): the
//! statements are the code's own, so the label set is bounded, and binds
//! never reach it.

use std::collections::HashMap;
use std::time::Instant;

use diesel::connection::{Instrumentation, InstrumentationEvent};
use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry};

/// The metric every pool's connections report to; cheap to clone.
#[derive(Clone)]
pub struct QueryMetrics {
    seconds: HistogramVec,
}

impl QueryMetrics {
    pub fn new() -> Self {
        let opts = HistogramOpts::new(
            "prewarm_db_query_seconds",
            "Postgres statements by verb and table or function, from sending to the last row",
        )
        .buckets(buckets());
        Self {
            seconds: HistogramVec::new(opts, &["statement"])
                .expect("a fixed, valid metric definition"),
        }
    }

    /// Exposes the histogram in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.seconds.clone()))
    }

    /// How many statements labelled `statement` were timed (tests, bench).
    pub fn count(&self, statement: &str) -> u64 {
        self.seconds
            .with_label_values(&[statement])
            .get_sample_count()
    }

    /// The instrumentation for one new connection.
    pub(crate) fn timer(&self) -> QueryTimer {
        QueryTimer {
            metrics: self.clone(),
            in_flight: None,
            by_sql: HashMap::new(),
            scratch: String::new(),
        }
    }
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Latency buckets from 0.1 ms (an index probe) to 10 s; a statement is
/// usually faster than a whole request, so one finer bucket at the bottom.
fn buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
}

/// Statements a connection remembers the histogram of; past it the label
/// is worked out again each time (a bound, not an expected size).
const REMEMBERED_STATEMENTS: usize = 256;

/// One connection's instrumentation: the query in flight and the
/// histogram child of each statement it has run.
pub(crate) struct QueryTimer {
    metrics: QueryMetrics,
    in_flight: Option<(Instant, tracing::Span)>,
    by_sql: HashMap<String, (Histogram, String)>,
    scratch: String,
}

impl QueryTimer {
    fn finish(&mut self, sql: &str, failed: bool) {
        let Some((started, span)) = self.in_flight.take() else {
            return;
        };
        let elapsed = started.elapsed().as_secs_f64();
        if let Some((histogram, label)) = self.by_sql.get(sql) {
            histogram.observe(elapsed);
            return record(&span, label, sql, failed);
        }
        let label = statement_label(sql);
        let histogram = self.metrics.seconds.with_label_values(&[&label]);
        histogram.observe(elapsed);
        record(&span, &label, sql, failed);
        if self.by_sql.len() < REMEMBERED_STATEMENTS {
            self.by_sql.insert(sql.to_string(), (histogram, label));
        }
    }
}

fn record(span: &tracing::Span, label: &str, sql: &str, failed: bool) {
    if span.is_disabled() {
        return;
    }
    span.record("db.operation.name", label);
    span.record("db.query.text", sql);
    if failed {
        span.record("otel.status_code", "ERROR");
    }
}

impl Instrumentation for QueryTimer {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                let span = tracing::info_span!(
                    "db.query",
                    otel.kind = "client",
                    db.system.name = "postgresql",
                    db.operation.name = tracing::field::Empty,
                    db.query.text = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                );
                self.in_flight = Some((Instant::now(), span));
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                // diesel-async's finish event carries the statement's SQL
                // alone (no binds); formatting it copies that text into a
                // buffer the connection keeps.
                use std::fmt::Write;
                let mut sql = std::mem::take(&mut self.scratch);
                sql.clear();
                let _ = write!(sql, "{query}");
                self.finish(&sql, error.is_some());
                self.scratch = sql;
            }
            _ => {}
        }
    }
}

/// "verb target", lower case: the statement's first word and the table it
/// reads or writes (or the function it calls). Only letters, digits, `_`
/// and one space survive, and at most 64 characters.
pub fn statement_label(sql: &str) -> String {
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .take(4096)
        .collect();
    let Some(first) = words.first() else {
        return "empty".into();
    };
    let verb = first.to_ascii_lowercase();
    let after = |keyword: &str| {
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case(keyword))
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    let target = match verb.as_str() {
        "select" => after("from").or_else(|| words.get(1).copied().filter(|w| w.contains('('))),
        "insert" => after("into"),
        "update" => words.get(1).copied(),
        "delete" => after("from"),
        "with" => words.get(1).copied(),
        _ => None,
    };
    let mut verb = clean(&verb);
    let Some(target) = target else {
        verb.truncate(64);
        return verb;
    };
    // A target written as `f(..)` is a function the statement calls.
    let (name, called) = match target.split_once('(') {
        Some((name, _)) => (name, true),
        None => (target, false),
    };
    let name = clean(name.rsplit('.').next().unwrap_or(name));
    let mut label = match (name.is_empty(), called && verb == "select") {
        (true, _) => verb,
        (false, true) => format!("call {name}"),
        (false, false) => format!("{verb} {name}"),
    };
    label.truncate(64);
    label
}

fn clean(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::statement_label;

    #[test]
    fn a_statement_is_named_by_its_verb_and_its_table_or_function() {
        let cases = [
            (
                r#"SELECT "pool_items"."id", "pool_items"."state" FROM "pool_items" WHERE "pool_items"."id" = $1"#,
                "select pool_items",
            ),
            (
                "SELECT * FROM prewarm_claim_item($1, $2, $3)",
                "call prewarm_claim_item",
            ),
            (
                "SELECT prewarm_claim_item($1, $2)",
                "call prewarm_claim_item",
            ),
            (
                r#"INSERT INTO "designs" ("id", "company_id") VALUES ($1, $2)"#,
                "insert designs",
            ),
            (
                "UPDATE pool_items SET state = 'ready' WHERE id = ANY($1)",
                "update pool_items",
            ),
            (
                "DELETE FROM public.idempotency_keys WHERE expires_at < now()",
                "delete idempotency_keys",
            ),
            (
                "WITH doomed AS (SELECT id FROM pool_items) DELETE FROM pool_items",
                "with doomed",
            ),
            ("BEGIN", "begin"),
            ("COMMIT", "commit"),
            ("SELECT 1", "select"),
            ("SET LOCAL jit = off", "set"),
            ("", "empty"),
        ];
        for (sql, want) in cases {
            assert_eq!(statement_label(sql), want, "{sql}");
        }
    }

    #[test]
    fn a_label_never_carries_a_value_or_grows_without_bound() {
        let long = format!("SELECT * FROM {}", "t".repeat(500));
        assert_eq!(statement_label(&long).len(), 64);
        assert_eq!(statement_label(&"x".repeat(500)).len(), 64);
        let quoted = "SELECT * FROM \"weird-name; DROP\" WHERE x = 'secret'";
        let label = statement_label(quoted);
        assert!(!label.contains("secret"), "{label}");
        assert!(label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' '));
    }
}
