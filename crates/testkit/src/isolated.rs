//! One run's own resources on the shared servers, for the tests
//! (`prewarm_tests::TestStack`) and the benchmark (`prewarm_bench::setup::Bench`)
//! alike: a database, a Redis key prefix, a Kafka topic and consumer group,
//! an S3 bucket and an admin token, all named from one random suffix so
//! that runs side by side never see each other's data.

use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The names of one run's resources.
#[derive(Debug, Clone)]
pub struct Isolated {
    /// `test`, `bench`, ...: the first word of every name.
    pub kind: &'static str,
    pub suffix: String,
    /// `postgres://user@host:port` (no database).
    pub pg_server: String,
    pub db_name: String,
    pub redis_prefix: String,
    pub topic: String,
    pub group_id: String,
    pub bucket: String,
    pub admin_token: String,
}

impl Isolated {
    pub fn new(kind: &'static str, pg_server: &str) -> Isolated {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        Isolated {
            kind,
            pg_server: pg_server.trim_end_matches('/').to_string(),
            db_name: format!("prewarm_{kind}_{suffix}"),
            redis_prefix: format!("{kind}:{suffix}:"),
            topic: format!("prewarm.{kind}.{suffix}"),
            group_id: format!("prewarm-{kind}-{suffix}"),
            bucket: format!("prewarm-{kind}-{suffix}"),
            // Long enough for the API's minimum (24 characters).
            admin_token: format!("{kind}-admin-token-{suffix}"),
            suffix,
        }
    }

    /// The run's database URL.
    pub fn db_url(&self) -> String {
        format!("{}/{}", self.pg_server, self.db_name)
    }

    /// Creates the run's database over `admin` (a connection to any other
    /// database of the server).
    pub async fn create_database(&self, admin: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        diesel::sql_query(format!("CREATE DATABASE {}", self.db_name))
            .execute(admin)
            .await
            .map(drop)
    }

    /// Drops the run's database, closing what is still connected to it.
    pub async fn drop_database(&self, admin: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        diesel::sql_query(self.drop_statement())
            .execute(admin)
            .await
            .map(drop)
    }

    /// Deletes the run's Redis keys (every key under its prefix): pool lists
    /// of up to 10^5 templates a run would otherwise leave in memory.
    pub async fn drop_redis_keys(&self, redis_url: &str) -> anyhow::Result<u64> {
        let index = prewarm_store::redis::Redis::connect(
            redis_url,
            None,
            &self.redis_prefix,
            1,
            Duration::from_secs(10),
        )
        .await?;
        Ok(index.clear_prefix().await?)
    }

    /// The statement that drops the run's database (also for `psql`).
    pub fn drop_statement(&self) -> String {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name)
    }

    /// The services' `PREWARM_*` settings that name the run's resources,
    /// and the ones every run shares: local listeners on free ports, topic
    /// created on demand, rate limits off (runs burst far past a tenant's
    /// budget; the rate-limit tests turn them back on).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("PREWARM_ADMIN_TOKEN", self.admin_token.clone()),
            ("PREWARM_DATABASE__URL", self.db_url()),
            ("PREWARM_REDIS__KEY_PREFIX", self.redis_prefix.clone()),
            ("PREWARM_KAFKA__TOPIC", self.topic.clone()),
            ("PREWARM_KAFKA__CREATE_TOPIC", "true".into()),
            ("PREWARM_WORKER__GROUP_ID", self.group_id.clone()),
            ("PREWARM_S3__BUCKET", self.bucket.clone()),
            ("PREWARM_SERVER__HOST", "127.0.0.1".into()),
            ("PREWARM_SERVER__METRICS_PORT", "0".into()),
            ("PREWARM_WORKER__HTTP_HOST", "127.0.0.1".into()),
            ("PREWARM_WORKER__HTTP_PORT", "0".into()),
            ("PREWARM_RATE_LIMIT__ENABLED", "false".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_carries_the_kind_and_one_suffix() {
        let a = Isolated::new("test", "postgres://u@h:5432/");
        let b = Isolated::new("test", "postgres://u@h:5432");
        assert_ne!(a.suffix, b.suffix);
        assert_eq!(
            a.db_url(),
            format!("postgres://u@h:5432/prewarm_test_{}", a.suffix)
        );
        for name in [
            &a.redis_prefix,
            &a.topic,
            &a.group_id,
            &a.bucket,
            &a.admin_token,
        ] {
            assert!(name.contains(&a.suffix) && name.contains("test"), "{name}");
        }
        let env = a.env();
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("PREWARM_S3__BUCKET"), Some(a.bucket.clone()));
        assert_eq!(get("PREWARM_DATABASE__URL"), Some(a.db_url()));
    }
}
