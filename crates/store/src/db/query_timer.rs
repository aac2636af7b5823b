//! Every query a span and a duration: a diesel [`Instrumentation`] set on
//! each pooled connection when it is opened, so no call site has to wrap
//! its queries (and none can forget to).
//!
//! diesel-async reports a statement's start when its future is built
//! (inside the caller's span, which becomes the query span's parent) and
//! its "finish" when the server's first answer is in: for a statement that
//! returns rows that is the bind, before the server has run it. So a
//! statement is timed from its start to whatever happens next on its
//! connection -- the next statement, or the connection going back to the
//! pool ([`DbConn`](super::DbConn)'s drop) -- which covers its rows. The
//! store's functions run their statements back to back and hand the
//! connection back at once, so that is the statement's time within a few
//! microseconds.
//!
//! A connection runs one statement at a time here (nothing pipelines on
//! one connection), so one slot holds the statement in flight. One that
//! never got an answer (its future dropped by a timeout, its connection
//! lost) is closed as `unanswered` when the slot is next needed.
//! Errors the server sends while rows stream (a `RAISE` in the claim) reach
//! the caller, not this timer: the caller's span and logs carry them.
//!
//! The metric's `statement` label names the statement by its verb and its
//! table or function ("select pool_items", "call prewarm_claim_item"): the
//! statements are the code's own, so the label set is bounded, and binds
//! never reach it. Statements outside any span (background passes between
//! their own spans) are timed but make no span, so they start no trace.

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
            "Postgres statements by verb and table or function, from sending to the next use of the connection",
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

    /// Their total time in seconds.
    pub fn sum(&self, statement: &str) -> f64 {
        self.seconds
            .with_label_values(&[statement])
            .get_sample_sum()
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

/// Statements a connection remembers the histogram of, and the longest SQL
/// it remembers one for (a batch insert's text grows with its rows): past
/// either, the label is worked out again each time.
const REMEMBERED_STATEMENTS: usize = 256;
const REMEMBERED_SQL_BYTES: usize = 4096;
/// The most SQL a span carries.
const SPAN_SQL_BYTES: usize = 2048;
/// The label of a statement that never got an answer.
const UNANSWERED: &str = "unanswered";

/// The statement in flight on one connection.
struct InFlight {
    started: Instant,
    /// `None` outside any span.
    span: Option<tracing::Span>,
    /// Its histogram, once the server answered.
    answered: Option<Histogram>,
}

/// One connection's instrumentation: the statement in flight and the
/// histogram child of each statement it has run.
pub(crate) struct QueryTimer {
    metrics: QueryMetrics,
    in_flight: Option<InFlight>,
    by_sql: HashMap<String, (Histogram, String)>,
    scratch: String,
}

impl QueryTimer {
    /// Closes the statement in flight, if any: timed to now if it was
    /// answered, counted as unanswered if not.
    pub(crate) fn settle(&mut self) {
        let Some(done) = self.in_flight.take() else {
            return;
        };
        let elapsed = done.started.elapsed().as_secs_f64();
        match done.answered {
            Some(histogram) => histogram.observe(elapsed),
            None => {
                self.metrics
                    .seconds
                    .with_label_values(&[UNANSWERED])
                    .observe(elapsed);
                if let Some(span) = &done.span {
                    span.record("db.operation.name", UNANSWERED);
                    span.record("otel.status_code", "ERROR");
                }
            }
        }
    }

    fn answered(&mut self, sql: &str, failed: bool) {
        let Self {
            metrics,
            in_flight,
            by_sql,
            ..
        } = self;
        let Some(flight) = in_flight.as_mut() else {
            return;
        };
        let worked_out;
        let (histogram, label) = match by_sql.get(sql) {
            Some((histogram, label)) => (histogram, label.as_str()),
            None => {
                let label = statement_label(sql);
                let histogram = metrics.seconds.with_label_values(&[&label]);
                if by_sql.len() < REMEMBERED_STATEMENTS && sql.len() <= REMEMBERED_SQL_BYTES {
                    let (histogram, label) =
                        by_sql.entry(sql.to_string()).or_insert((histogram, label));
                    (&*histogram, label.as_str())
                } else {
                    worked_out = (histogram, label);
                    (&worked_out.0, worked_out.1.as_str())
                }
            }
        };
        if let Some(span) = &flight.span {
            span.record("db.operation.name", label);
            span.record("db.query.text", truncated(sql, SPAN_SQL_BYTES));
            if failed {
                span.record("otel.status_code", "ERROR");
            }
        }
        flight.answered = Some(histogram.clone());
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Instrumentation for QueryTimer {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                self.settle();
                let span = (!tracing::Span::current().is_none()).then(|| {
                    tracing::info_span!(
                        "db.query",
                        otel.kind = "client",
                        db.system.name = "postgresql",
                        db.operation.name = tracing::field::Empty,
                        db.query.text = tracing::field::Empty,
                        otel.status_code = tracing::field::Empty,
                    )
                });
                self.in_flight = Some(InFlight {
                    started: Instant::now(),
                    span,
                    answered: None,
                });
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                // diesel-async's finish event carries the statement's SQL
                // alone (no binds); formatting it copies that text into a
                // buffer the connection keeps.
                use std::fmt::Write;
                let mut sql = std::mem::take(&mut self.scratch);
                sql.clear();
                let _ = write!(sql, "{query}");
                self.answered(&sql, error.is_some());
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
    // Only Prewarm's own functions are named as calls; a target written as
    // another function (`now()`, `unnest(..)`) names no table.
    let mut label = match (name.is_empty(), called) {
        (true, _) => verb,
        (false, true) if verb == "select" && name.starts_with("prewarm_") => {
            format!("call {name}")
        }
        (false, true) => verb,
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
            (
                "SELECT extract(epoch FROM now())::float8 - $1 AS now",
                "select",
            ),
            (
                "SELECT u.k AS object_key FROM unnest($1::text[], $2::uuid[]) AS u(k, tpl)",
                "select",
            ),
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
