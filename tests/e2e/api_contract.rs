//! The API against its own OpenAPI document, property-based: schemathesis
//! (`scripts/schemathesis.sh run`, installed by `make up`) generates requests
//! from the served `/openapi.json` (valid and invalid ones, and stateful
//! sequences) and checks every answer: no 5xx, only documented status codes,
//! content types and headers, bodies that match their schemas; and, through
//! `tests/schemathesis/hooks.py`, that tenant B never reads what is private to
//! tenant A and that a 5xx body is generic.

use std::path::Path;

use prewarm_recommender::Faults;
use prewarm_tests::{Options, TestStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_openapi_contract() {
    let stack = TestStack::spawn(Options {
        // Similar templates need the stand-in recommendation service (no
        // latency): without it that endpoint can only answer 503.
        recommender: Some(Faults {
            latency_ms: 0,
            ..Faults::default()
        }),
        ..Options::default()
    })
    .await;
    let a = stack.create_tenant("contract-a", 10_000).await;
    let b = stack.create_tenant("contract-b", 10_000).await;
    let private = stack.create_template(&a, 2, "private").await;
    let public = stack.create_template(&b, 2, "public").await;
    let design = stack.create_design(&a, private.id).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/schemathesis.sh");
    let mut cmd = std::process::Command::new(script);
    cmd.arg("run")
        .arg(&stack.base)
        .env("PREWARM_ST_KEY_A", &a.key)
        .env("PREWARM_ST_KEY_B", &b.key)
        .env("PREWARM_ST_ADMIN_TOKEN", &stack.admin_token)
        .env("PREWARM_ST_TEMPLATE_PRIVATE", private.id.to_string())
        .env("PREWARM_ST_TEMPLATE_PUBLIC", public.id.to_string())
        .env("PREWARM_ST_DESIGN", design.id.to_string());
    // The run takes tens of seconds: off the runtime's threads.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run scripts/schemathesis.sh (installed by `make up`)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found contract violations ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stack.finish().await;
}
