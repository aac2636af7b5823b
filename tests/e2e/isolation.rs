//! Tenant isolation (I9): company B never sees company A's private templates
//! or any of A's designs, on any endpoint.

use prewarm_tests::{error_code, Options, TestStack};
use reqwest::multipart::{Form, Part};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_company_gets_404_on_every_endpoint() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let a = stack.create_tenant("a", 10).await;
    let b = stack.create_tenant("b", 10).await;
    let private = stack.create_template(&a, 2, "private").await;
    let design = stack.create_design(&a, private.id).await;
    let t = private.id;
    let d = design.id;

    let expect = |status: u16, code: &str, what: &str, got: (reqwest::StatusCode, String)| {
        assert_eq!((got.0.as_u16(), got.1.as_str()), (status, code), "{what}");
    };
    expect(
        404,
        "template_not_found",
        "GET template",
        error_code(stack.get(&b, &format!("/templates/{t}")).await).await,
    );
    expect(
        404,
        "template_not_found",
        "GET pool",
        error_code(stack.get(&b, &format!("/templates/{t}/pool")).await).await,
    );
    let patch = stack
        .http
        .patch(stack.url(&format!("/templates/{t}")))
        .bearer_auth(&b.key)
        .json(&json!({"name": "mine now"}))
        .send()
        .await
        .unwrap();
    expect(
        404,
        "template_not_found",
        "PATCH template",
        error_code(patch).await,
    );
    let form = Form::new().part(
        "image",
        Part::bytes(vec![1, 2, 3])
            .file_name("x.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let put = stack
        .http
        .put(stack.url(&format!("/templates/{t}/images")))
        .bearer_auth(&b.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect(
        404,
        "template_not_found",
        "PUT images",
        error_code(put).await,
    );
    expect(
        404,
        "template_not_found",
        "POST design",
        error_code(stack.post_design(&b, t).await).await,
    );
    expect(
        404,
        "design_not_found",
        "GET design",
        error_code(stack.get(&b, &format!("/designs/{d}")).await).await,
    );
    let del = stack
        .http
        .delete(stack.url(&format!("/designs/{d}")))
        .bearer_auth(&b.key)
        .send()
        .await
        .unwrap();
    expect(
        404,
        "design_not_found",
        "DELETE design",
        error_code(del).await,
    );

    // Lists: B sees neither.
    let templates: serde_json::Value = stack.get(&b, "/templates").await.json().await.unwrap();
    assert!(templates["templates"].as_array().unwrap().is_empty());
    let designs: serde_json::Value = stack.get(&b, "/designs").await.json().await.unwrap();
    assert!(designs["designs"].as_array().unwrap().is_empty());

    // A still has both, untouched.
    assert_eq!(stack.get(&a, &format!("/designs/{d}")).await.status(), 200);
    let read: serde_json::Value = stack
        .get(&a, &format!("/templates/{t}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["name"], "Poster");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_template_is_usable_by_all_but_editable_by_its_owner_only() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let a = stack.create_tenant("a", 10).await;
    let b = stack.create_tenant("b", 10).await;
    let public = stack.create_template(&a, 2, "public").await;

    assert_eq!(
        stack
            .get(&b, &format!("/templates/{}", public.id))
            .await
            .status(),
        200
    );
    let design = stack.create_design(&b, public.id).await;
    assert_eq!(design.company_id, b.id);
    // A cannot read B's design of A's public template.
    assert_eq!(
        stack
            .get(&a, &format!("/designs/{}", design.id))
            .await
            .status(),
        404
    );

    let patch = stack
        .http
        .patch(stack.url(&format!("/templates/{}", public.id)))
        .bearer_auth(&b.key)
        .json(&json!({"name": "hijack"}))
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(patch).await;
    assert_eq!((status.as_u16(), code.as_str()), (403, "forbidden"));
    stack.finish().await;
}

/// I9 at commit on the cold path: company A makes its public template
/// private while company B's copies run. B's design is refused (404, as a
/// design started after the change would be) and its copies are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_made_private_while_another_company_copies_yields_it_no_design() {
    let stack = TestStack::spawn(Options {
        worker: false,
        env: vec![("PREWARM_SERVING__FROM_POOL".into(), "false".into())],
        ..Options::default()
    })
    .await;
    let a = stack.create_tenant("a", 10).await;
    let b = stack.create_tenant("b", 10).await;
    let public = stack.create_template(&a, 2, "public").await;
    let mut gate = stack.pause.arm(prewarm_store::pause::at::COLD_COPIED);
    let post = stack.post_design_in_background(&b, public.id);
    gate.reached().await;
    let hidden = stack
        .http
        .patch(stack.url(&format!("/templates/{}", public.id)))
        .bearer_auth(&a.key)
        .json(&json!({"visibility": "private"}))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 200);
    gate.release();
    let resp = post.await.unwrap().expect("post design");
    assert_eq!(
        error_code(resp).await,
        (reqwest::StatusCode::NOT_FOUND, "template_not_found".into())
    );
    let copies = stack.objects.list("designs/").await.unwrap();
    assert!(
        copies.is_empty(),
        "the refused design's copies stay: {copies:?}"
    );
    stack.finish().await;
}

/// One company's queued refills do not hold back another's: company A
/// creates 12 templates, then company B one, while no worker runs; one
/// worker then takes them in one batch and refills one template at a time.
/// B's refill starts in the first round (of two companies, second at the
/// latest), where in arrival or id order it started last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_companys_queued_refills_do_not_hold_back_anothers() {
    use diesel_async::RunQueryDsl;
    let stack = TestStack::spawn(Options::without_worker()).await;
    let a = stack.create_tenant("a", 10).await;
    let b = stack.create_tenant("b", 10).await;
    let mut templates = Vec::new();
    for _ in 0..12 {
        templates.push(stack.create_template(&a, 2, "private").await.id);
    }
    let b_template = stack.create_template(&b, 2, "private").await.id;
    let _worker = stack.spawn_worker_process(&[
        ("PREWARM_WORKER__RECONCILE_INTERVAL_MS", "0"),
        ("PREWARM_WORKER__REFILL_PARALLELISM", "1"),
        // All 13 requests in one batch.
        ("PREWARM_WORKER__BATCH_WINDOW_MS", "3000"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ]);
    stack
        .wait_pool(&b, b_template, 4, std::time::Duration::from_secs(60))
        .await;
    for t in &templates {
        stack
            .wait_pool(&a, *t, 4, std::time::Duration::from_secs(60))
            .await;
    }
    #[derive(diesel::QueryableByName)]
    struct First {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        template_id: uuid::Uuid,
    }
    let mut conn = stack.db.conn().await.unwrap();
    let order: Vec<First> = diesel::sql_query(
        "SELECT template_id FROM pool_items GROUP BY template_id ORDER BY min(created_at)",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let order: Vec<uuid::Uuid> = order.into_iter().map(|f| f.template_id).collect();
    assert_eq!(order.len(), 13);
    let rank = order.iter().position(|t| *t == b_template.0).unwrap();
    assert!(rank <= 1, "B's refill started {}th of 13", rank + 1);
    stack.finish().await;
}
