//! Bad input gets a 4xx with a stable code, never a 5xx (I10).

use prewarm_tests::{error_code, png_part, Options, TestStack};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::json;
use shared_domain::ids::TemplateId;

fn small_limits() -> Options {
    Options {
        worker: false,
        env: vec![
            ("PREWARM_SERVER__MAX_IMAGE_BYTES".into(), "4096".into()),
            ("PREWARM_SERVER__MAX_UPLOAD_BYTES".into(), "65536".into()),
            ("PREWARM_SERVER__JSON_LIMIT_BYTES".into(), "1024".into()),
        ],
        ..Options::default()
    }
}

/// POSTs a raw body with the given content type.
async fn post_raw(
    stack: &TestStack,
    path: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> reqwest::Response {
    stack
        .http
        .post(stack.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

const JSON: &str = "application/json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_stable_4xx_codes() {
    let stack = TestStack::spawn(small_limits()).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let mut checks: Vec<(&str, u16, &str, (reqwest::StatusCode, String))> = Vec::new();

    let r = stack.post_design(&tenant, TemplateId::new()).await;
    checks.push((
        "unknown template",
        404,
        "template_not_found",
        error_code(r).await,
    ));

    let r = post_raw(
        &stack,
        "/designs",
        &tenant.key,
        JSON,
        "{\"template_id\": ".into(),
    )
    .await;
    checks.push(("truncated JSON", 400, "malformed_json", error_code(r).await));

    let r = post_raw(
        &stack,
        "/designs",
        &tenant.key,
        JSON,
        json!({"template": "x"}).to_string(),
    )
    .await;
    checks.push(("wrong field", 400, "invalid_request", error_code(r).await));

    let r = post_raw(
        &stack,
        "/designs",
        &tenant.key,
        JSON,
        json!({"template_id": "not-a-uuid"}).to_string(),
    )
    .await;
    checks.push(("id not a UUID", 400, "invalid_request", error_code(r).await));

    let big = json!({"template_id": "x".repeat(4000)}).to_string();
    let r = post_raw(&stack, "/designs", &tenant.key, JSON, big).await;
    checks.push((
        "oversized JSON",
        413,
        "payload_too_large",
        error_code(r).await,
    ));

    let r = post_raw(
        &stack,
        "/designs",
        &tenant.key,
        "text/plain",
        "template_id=1".into(),
    )
    .await;
    checks.push((
        "not JSON",
        415,
        "unsupported_media_type",
        error_code(r).await,
    ));

    let r = stack.get(&tenant, "/designs/not-a-uuid").await;
    checks.push(("path not a UUID", 400, "invalid_id", error_code(r).await));

    let r = stack.http.get(stack.url("/designs")).send().await.unwrap();
    checks.push(("missing auth", 401, "missing_auth", error_code(r).await));

    let r = stack
        .http
        .get(stack.url("/designs"))
        .bearer_auth("pw_nope")
        .send()
        .await
        .unwrap();
    checks.push(("unknown key", 401, "invalid_auth", error_code(r).await));

    let company = json!({"name": "x", "design_limit": 1}).to_string();
    let r = post_raw(&stack, "/admin/companies", &tenant.key, JSON, company).await;
    checks.push((
        "company key on admin route",
        401,
        "invalid_auth",
        error_code(r).await,
    ));

    let negative = json!({"name": "x", "design_limit": -5}).to_string();
    let r = post_raw(
        &stack,
        "/admin/companies",
        &stack.admin_token,
        JSON,
        negative,
    )
    .await;
    checks.push((
        "negative limit",
        400,
        "invalid_request",
        error_code(r).await,
    ));

    let r = stack.get(&tenant, "/no/such/route").await;
    checks.push(("unknown route", 404, "not_found", error_code(r).await));

    // Uploads.
    let big = Form::new()
        .part("metadata", Part::text(json!({"name": "big"}).to_string()))
        .part("image", png_part(0, 8192));
    let r = stack
        .send_form(&tenant, Method::POST, "/templates", big)
        .await;
    checks.push((
        "image over its limit",
        413,
        "payload_too_large",
        error_code(r).await,
    ));

    let mut huge = Form::new().part("metadata", Part::text(json!({"name": "huge"}).to_string()));
    for i in 0..40 {
        huge = huge.part("image", png_part(i, 4000));
    }
    let r = stack
        .send_form(&tenant, Method::POST, "/templates", huge)
        .await;
    checks.push((
        "upload over its limit",
        413,
        "payload_too_large",
        error_code(r).await,
    ));

    let r = stack
        .upload_template(&tenant, 0, json!({"name": "empty"}))
        .await;
    checks.push((
        "no images",
        422,
        "template_has_no_images",
        error_code(r).await,
    ));

    let r = stack.upload_template(&tenant, 1, json!({"name": ""})).await;
    checks.push(("empty name", 400, "invalid_request", error_code(r).await));

    let r = stack
        .upload_template(&tenant, 1, json!({"name": "x", "layout": [1, 2]}))
        .await;
    checks.push((
        "layout not an object",
        400,
        "invalid_request",
        error_code(r).await,
    ));

    // What Postgres or a JSON reader would refuse later is refused now
    // (found by the schemathesis contract test: these were 500s).
    let r = stack
        .upload_template(
            &tenant,
            1,
            json!({"name": "x", "layout": {"x": 1.7976931348623157e308}}),
        )
        .await;
    checks.push((
        "huge layout number",
        400,
        "invalid_request",
        error_code(r).await,
    ));
    let r = stack
        .upload_template(&tenant, 1, json!({"name": "a\u{0}b"}))
        .await;
    checks.push(("NUL in a name", 400, "invalid_request", error_code(r).await));
    let r = stack
        .upload_template(&tenant, 1, json!({"name": "x", "layout": {"k": "\u{0}"}}))
        .await;
    checks.push((
        "NUL in a layout",
        400,
        "invalid_request",
        error_code(r).await,
    ));
    let r = stack
        .http
        .post(stack.url("/admin/companies"))
        .bearer_auth(&stack.admin_token)
        .json(&json!({"name": "a\u{0}b", "design_limit": 5}))
        .send()
        .await
        .unwrap();
    checks.push((
        "NUL in a company name",
        400,
        "invalid_request",
        error_code(r).await,
    ));
    let r = stack
        .http
        .put(stack.url("/designs"))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST, GET");
    checks.push((
        "method not served",
        405,
        "method_not_allowed",
        error_code(r).await,
    ));

    let bad_meta = Form::new()
        .part("metadata", Part::text("{not json"))
        .part("image", png_part(0, 64));
    let r = stack
        .send_form(&tenant, Method::POST, "/templates", bad_meta)
        .await;
    checks.push((
        "metadata not JSON",
        400,
        "malformed_json",
        error_code(r).await,
    ));

    let not_image = Form::new()
        .part("metadata", Part::text(json!({"name": "x"}).to_string()))
        .part(
            "image",
            Part::bytes(b"hello".to_vec())
                .file_name("a.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
    let r = stack
        .send_form(&tenant, Method::POST, "/templates", not_image)
        .await;
    checks.push((
        "image part not an image",
        415,
        "unsupported_media_type",
        error_code(r).await,
    ));

    let r = post_raw(
        &stack,
        "/templates",
        &tenant.key,
        JSON,
        json!({"name": "x"}).to_string(),
    )
    .await;
    checks.push((
        "template as JSON",
        415,
        "unsupported_media_type",
        error_code(r).await,
    ));

    let mut failures = Vec::new();
    for (what, status, code, (got_status, got_code)) in &checks {
        assert!(got_status.as_u16() < 500, "{what}: a 5xx for bad input");
        if (got_status.as_u16(), got_code.as_str()) != (*status, *code) {
            failures.push(format!(
                "{what}: want {status} {code}, got {got_status} {got_code}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Nothing was stored by the refused uploads.
    assert!(stack.objects.list("templates/").await.unwrap().is_empty());
    stack.finish().await;
}

/// Any token is a valid HTTP method, and the server routes it (to a 4xx):
/// made-up methods share one `other` label, so no client, with or without
/// a key, can grow the request histogram's series without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_share_one_metrics_label() {
    let stack = TestStack::spawn(Options {
        worker: false,
        ..Options::default()
    })
    .await;
    for i in 0..5 {
        let method = Method::from_bytes(format!("PROBE{i}").as_bytes()).unwrap();
        let r = stack
            .http
            .request(method, stack.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "PROBE{i}: {}", r.status());
    }
    let text = stack.metrics().await;
    assert!(
        !text.contains("PROBE"),
        "a client's method became a label:\n{text}"
    );
    let other = text
        .lines()
        .filter(|l| l.starts_with("prewarm_http_request_duration_seconds_count"))
        .filter(|l| l.contains("method=\"other\"") && l.contains("route=\"/healthz\""))
        .collect::<Vec<_>>();
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(other[0].ends_with(" 5"), "{other:?}");
}
