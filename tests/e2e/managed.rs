//! Connections configured the hardened way, against real servers that
//! `make up` starts (`scripts/stack.sh`): a second PostgreSQL cluster that
//! accepts TLS only, with a server certificate from a test CA (`.run/tls/`).

use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use prewarm_store::db::tls::{PgTls, SslMode};
use prewarm_tests::{env_or, Options, TestStack};
use shared_domain::design::ServedFrom;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn tls_file(name: &str) -> String {
    format!("{ROOT}/.run/tls/{name}")
}

fn pg_tls_server() -> String {
    env_or("PREWARM_TEST_PG_TLS", "postgres://postgres@localhost:5433")
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_work_over_postgres_tls_with_verify_full() {
    let stack = TestStack::spawn(Options {
        pg_server: Some(pg_tls_server()),
        pg_tls: Some(("verify-full".into(), tls_file("ca.pem"))),
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    // The worker refilled over TLS; the API claims over TLS.
    stack
        .wait_pool(&tenant, template.id, 4, std::time::Duration::from_secs(30))
        .await;
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    let mut conn = stack.db.conn().await.unwrap();
    let ssl: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(ssl.ssl, "the pool's connection is not encrypted");
    // The server really refuses plain connections.
    let plain = PgTls::default()
        .establish(&format!("{}/postgres", pg_tls_server()))
        .await;
    assert!(plain.is_err(), "a plain connection was accepted");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_at_start_with_the_reason() {
    let stack = TestStack::spawn(Options {
        worker: false,
        ..Options::default()
    })
    .await;
    let mut env = stack.env.clone();
    env.extend(
        [
            (
                "PREWARM_DATABASE__URL",
                format!("{}/postgres", pg_tls_server()),
            ),
            ("PREWARM_DATABASE__MIGRATE", "false".into()),
            ("PREWARM_DATABASE__SSL_MODE", "verify-full".into()),
            ("PREWARM_DATABASE__SSL_ROOT_CERT", tls_file("other-ca.pem")),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let settings = template_api::settings::load_from(env.clone().into_iter()).unwrap();
    let error = match template_api::startup::Application::build(settings).await {
        Ok(_) => panic!("the API started against a server its CA does not vouch for"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("Postgres at start") && error.contains("UnknownIssuer"),
        "unclear error: {error}"
    );
    // The same CA with `verify-ca` is refused too; `require` encrypts
    // without checking, and connects.
    let other = std::path::PathBuf::from(tls_file("other-ca.pem"));
    let url = format!("{}/postgres", pg_tls_server());
    let verify_ca = PgTls::new(SslMode::VerifyCa, Some(&other)).unwrap();
    assert!(verify_ca.establish(&url).await.is_err());
    let require = PgTls::new(SslMode::Require, Some(&other)).unwrap();
    assert!(require.establish(&url).await.is_ok());
    // A missing CA file is named at start.
    let Err(missing) = PgTls::new(SslMode::VerifyFull, Some(&"/nonexistent/ca.pem".into())) else {
        panic!("a missing CA file is an error");
    };
    assert!(missing.contains("database.ssl_root_cert"), "{missing}");
    stack.finish().await;
}
