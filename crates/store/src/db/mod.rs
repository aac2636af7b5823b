//! Postgres through diesel-async: the connection pool, the migrations, TLS
//! (`tls.rs`), the statement timer every pooled connection carries
//! (`query_timer.rs`), and one module per table (rows kept separate from
//! domain types, converted explicitly).
//!
//! Queries use diesel's DSL over the generated `schema.rs`. A statement is
//! written as SQL (`sql_query`) only where the DSL cannot say it: `unnest`
//! of bind arrays, CTEs (`WITH ... DELETE ... RETURNING`), `FILTER`
//! aggregates, epoch arithmetic on `now()`, upserts with a condition,
//! advisory locks, the catalog, and the one table name chosen at run time
//! (`pool_policies`). Each stays in the module of the table it serves.

pub mod api_keys;
pub mod companies;
pub mod cursors;
pub mod demand_profile;
pub mod designs;
pub mod error;
pub mod idempotency;
pub mod leases;
pub mod object_refs;
pub mod page;
pub mod pool_checks;
pub mod pool_depths;
pub mod pool_items;
pub mod pool_live;
pub mod pool_policies;
pub mod pool_targets;
pub mod query_timer;
pub mod schema;
pub mod templates;
pub mod tls;

use std::time::Duration;

use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub use error::{error_chain, StoreError};

/// Turns JIT compilation off for the rest of the current transaction. The
/// background passes' batch statements (a GC page of 1,000 keys, a
/// reconciler batch of templates) are many cheap index probes whose
/// estimated cost passes `jit_above_cost` once the tables grow: at 10^5
/// templates, compiling the GC's page check took 17 ms of its 26. `SET
/// LOCAL`, so it holds behind a transaction-pooling PgBouncer too.
pub(crate) async fn jit_off(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    diesel::sql_query("SET LOCAL jit = off")
        .execute(conn)
        .await
        .map(|_| ())
}

pub type DbPool = deadpool::managed::Pool<CheckedManager>;

/// A pooled connection, used as an `AsyncPgConnection`. Dropping it hands
/// it back to the pool, first closing the timing of its last statement
/// (see [`query_timer`]: a statement's rows are read after diesel reports
/// it done).
pub struct DbConn(deadpool::managed::Object<CheckedManager>);

impl std::ops::Deref for DbConn {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        &self.0
    }
}

impl std::ops::DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.0
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        // Not while unwinding (a second panic would abort); and guarded,
        // because diesel-async panics if a query future still shared the
        // instrumentation (none can: this is the only handle).
        if std::thread::panicking() {
            return;
        }
        let conn: &mut AsyncPgConnection = &mut self.0;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            use diesel_async::AsyncConnection;
            if let Some(timer) = conn
                .instrumentation()
                .downcast_mut::<query_timer::QueryTimer>()
            {
                timer.settle();
            }
        }));
    }
}

/// [`DatabaseSettings::check_idle_ms`](crate::settings::DatabaseSettings)'s default.
pub const DEFAULT_CHECK_IDLE: Duration = Duration::from_secs(1);

/// The pool's connection manager: diesel-async's, except that a connection
/// handed out again within `check_idle` of its last checkout is not checked
/// with a `SELECT 1` round trip first (HikariCP's "alive bypass window"). A
/// busy pool then costs one round trip per query instead of two; a
/// connection that sat idle longer -- where a failover, a restart or an idle
/// timeout of a proxy may have killed it -- is still checked. A connection
/// whose socket closed is never handed out: the driver marks it broken.
/// With the pool's LIFO order the few connections a light load needs stay
/// recent, and the rest age into being checked.
pub struct CheckedManager {
    inner: AsyncDieselConnectionManager<AsyncPgConnection>,
    check_idle: Duration,
    /// Checkouts that ran the check (see [`Db::checks`]).
    checks: std::sync::atomic::AtomicU64,
}

impl deadpool::managed::Manager for CheckedManager {
    type Type = AsyncPgConnection;
    type Error = diesel_async::pooled_connection::PoolError;

    async fn create(&self) -> Result<AsyncPgConnection, Self::Error> {
        self.inner.create().await
    }

    async fn recycle(
        &self,
        conn: &mut AsyncPgConnection,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Self::Error> {
        use diesel_async::pooled_connection::PoolableConnection;
        if metrics.last_used() < self.check_idle && !std::thread::panicking() && !conn.is_broken() {
            return Ok(());
        }
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.recycle(conn, metrics).await
    }
}

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The first migration: today's schema as one baseline. Migrations after
/// it are append-only, and each release works against the schema of the
/// one before (docs/operations.md, "Schema changes").
pub const BASELINE: &str = "20261209000001";

/// The database handle every query goes through: a pool plus how long to wait
/// for a free connection before answering "unavailable" instead of hanging.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    acquire_timeout: Duration,
    /// How the pool was built, for [`local_copy`](Self::local_copy).
    spec: std::sync::Arc<Spec>,
}

struct Spec {
    url: String,
    check_idle: Duration,
    tls: tls::PgTls,
    /// Every connection of every pool built from this spec times its
    /// statements here.
    queries: query_timer::QueryMetrics,
}

impl Spec {
    fn build(&self, max_connections: usize) -> Result<DbPool, StoreError> {
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        let tls = self.tls.clone();
        let queries = self.queries.clone();
        config.custom_setup = Box::new(move |url| {
            let tls = tls.clone();
            let url = url.to_string();
            let timer = queries.timer();
            Box::pin(async move {
                use diesel_async::AsyncConnection;
                let mut conn = tls.establish(&url).await?;
                conn.set_instrumentation(timer);
                Ok(conn)
            })
        });
        let manager = CheckedManager {
            inner: AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                &self.url, config,
            ),
            check_idle: self.check_idle,
            checks: Default::default(),
        };
        DbPool::builder(manager)
            .max_size(max_connections.max(1))
            .queue_mode(deadpool::managed::QueueMode::Lifo)
            .build()
            .map_err(|e| StoreError::unavailable("building the Postgres pool", e))
    }
}

impl Db {
    /// A pool of plain connections (local tools, tests), checked after
    /// [`DEFAULT_CHECK_IDLE`] idle.
    pub fn connect(
        url: &str,
        max_connections: usize,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::connect_with(
            url,
            max_connections,
            acquire_timeout,
            DEFAULT_CHECK_IDLE,
            &tls::PgTls::default(),
        )
    }

    /// A pool whose connections use `tls` (see [`tls`]) and are checked
    /// when handed out after `check_idle` unused (see [`CheckedManager`]).
    /// Handed out most recently used first.
    pub fn connect_with(
        url: &str,
        max_connections: usize,
        acquire_timeout: Duration,
        check_idle: Duration,
        tls: &tls::PgTls,
    ) -> Result<Self, StoreError> {
        let spec = Spec {
            url: url.to_string(),
            check_idle,
            tls: tls.clone(),
            queries: query_timer::QueryMetrics::new(),
        };
        Ok(Self {
            pool: spec.build(max_connections)?,
            acquire_timeout,
            spec: std::sync::Arc::new(spec),
        })
    }

    /// A pool of its own of up to `max_connections` to the same database.
    /// Connections are opened on first use, so their driver tasks run on
    /// the runtime of the thread that uses the pool (an actix worker's): a
    /// statement sent from that thread is written and answered there,
    /// without waking a thread of another runtime twice per round trip.
    pub fn local_copy(&self, max_connections: usize) -> Result<Self, StoreError> {
        Ok(Self {
            pool: self.spec.build(max_connections)?,
            acquire_timeout: self.acquire_timeout,
            spec: self.spec.clone(),
        })
    }

    /// Caps this pool at `max_connections` from now on (connections over it
    /// close as they come back).
    pub fn resize(&self, max_connections: usize) {
        self.pool.resize(max_connections.max(1));
    }

    /// How many checkouts so far checked their connection first (those
    /// of a connection idle longer than `check_idle`, or a broken one).
    pub fn checks(&self) -> u64 {
        // Spelled out: `RunQueryDsl::load` is in scope too.
        std::sync::atomic::AtomicU64::load(
            &self.pool.manager().checks,
            std::sync::atomic::Ordering::Relaxed,
        )
    }

    /// The statement timings of this pool and of its
    /// [`local_copy`](Self::local_copy)s (see [`query_timer`]).
    pub fn query_metrics(&self) -> &query_timer::QueryMetrics {
        &self.spec.queries
    }

    /// A pooled connection, or `Unavailable` after the acquire timeout.
    pub async fn conn(&self) -> Result<DbConn, StoreError> {
        match tokio::time::timeout(self.acquire_timeout, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(DbConn(conn)),
            Ok(Err(e)) => Err(StoreError::unavailable("taking a Postgres connection", e)),
            Err(_) => Err(StoreError::Unavailable {
                what: format!("no Postgres connection within {:?}", self.acquire_timeout),
                source: None,
            }),
        }
    }

    /// `SELECT 1`, for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }
}

/// Applies pending migrations, one process at a time.
///
/// Must run on a multi-threaded tokio runtime (diesel's migration harness is
/// synchronous and the async harness bridges it with `block_in_place`).
pub async fn run_migrations(url: &str) -> Result<(), StoreError> {
    run_migrations_with(url, &tls::PgTls::default()).await
}

/// How long one migration run may hold the `migrations` lease.
const MIGRATION_LEASE: Duration = Duration::from_secs(600);

/// [`run_migrations`] over a connection secured by `tls`. Processes starting
/// together take turns through the `migrations` row of `singleton_leases`
/// (created here if missing): no session advisory lock, so this works
/// through a transaction-pooling proxy too.
pub async fn run_migrations_with(url: &str, tls: &tls::PgTls) -> Result<(), StoreError> {
    let mut conn = tls
        .establish(url)
        .await
        .map_err(|e| StoreError::unavailable("connecting to Postgres", e))?;
    create_lease_table(&mut conn).await?;
    let holder = format!("migrations-{}", uuid::Uuid::new_v4().simple());
    let deadline = tokio::time::Instant::now() + MIGRATION_LEASE;
    while !leases::try_acquire(&mut conn, "migrations", &holder, MIGRATION_LEASE).await? {
        if tokio::time::Instant::now() > deadline {
            return Err(StoreError::Migration {
                what: "another process held the migrations lease for 10 minutes".into(),
                source: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Err(e) = refuse_pre_baseline(&mut conn).await {
        leases::release(&mut conn, "migrations", &holder).await?;
        return Err(e);
    }
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.len())
        .map_err(|source| StoreError::Migration {
            what: "applying the pending migrations".into(),
            source: Some(source),
        });
    let mut conn = harness.into_inner();
    leases::release(&mut conn, "migrations", &holder).await?;
    let applied = applied?;
    if applied > 0 {
        tracing::info!(applied, "applied database migrations");
    }
    Ok(())
}

/// A database whose migration history starts before [`BASELINE`] was made
/// by a development build from before the baseline: its schema cannot be
/// carried on by this one (the baseline would be applied over it). Refused,
/// with what to do, rather than failing on the first `CREATE TABLE`.
async fn refuse_pre_baseline(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let history: N = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_tables
          WHERE tablename = '__diesel_schema_migrations' AND schemaname = current_schema()",
    )
    .get_result(conn)
    .await?;
    if history.n == 0 {
        return Ok(());
    }
    let older: N = diesel::sql_query(
        "SELECT count(*) AS n FROM __diesel_schema_migrations WHERE version < $1",
    )
    .bind::<diesel::sql_types::Text, _>(BASELINE)
    .get_result(conn)
    .await?;
    if older.n > 0 {
        return Err(StoreError::Migration {
            what: format!(
                "this database records {} migrations from before the baseline {BASELINE}: it was made by a \
                 development build this release cannot migrate; create a new database (docs/operations.md, \
                 \"Schema changes\")",
                older.n
            ),
            source: None,
        });
    }
    Ok(())
}

/// Creates the lease table the migrations lease lives in. `CREATE TABLE IF
/// NOT EXISTS` is not safe against itself: two processes starting on a new
/// database both pass the check and one fails on the catalog's unique index
/// (seen: the API and the worker started together). A transaction-level
/// advisory lock serializes them (and, unlike a session lock, holds through
/// a transaction-pooling PgBouncer).
async fn create_lease_table(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(726577617206)")
            .execute(conn)
            .await?;
        diesel::sql_query(
            "CREATE TABLE IF NOT EXISTS singleton_leases (
                 name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)",
        )
        .execute(conn)
        .await?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// The current time at Postgres' precision (microseconds), so a value written
/// and read back compares equal.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let t = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use diesel::migration::MigrationSource;

    #[test]
    fn the_first_migration_is_the_baseline() {
        let all = MigrationSource::<diesel::pg::Pg>::migrations(&super::MIGRATIONS).unwrap();
        let first = all.first().map(|m| m.name().version().to_string());
        assert_eq!(first.as_deref(), Some(super::BASELINE));
    }
}
