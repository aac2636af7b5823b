//! The API contract a client team relies on: ETag / If-Match on template
//! edits, cursor pagination that stays stable while rows are inserted,
//! presigned image URLs, and the admin's key list / revoke / rotate.

use std::time::Duration;

use futures::future::join_all;
use prewarm_tests::{Options, Tenant, TestStack};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// One `image` part and nothing else (`PUT /templates/{id}/images`).
fn image_only_form() -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part("image", prewarm_tests::png_part(0, 64))
}

async fn patch(
    stack: &TestStack,
    tenant: &Tenant,
    id: &str,
    etag: Option<&str>,
    name: &str,
) -> reqwest::Response {
    let mut req = stack
        .http
        .patch(stack.url(&format!("/templates/{id}")))
        .bearer_auth(&tenant.key)
        .json(&json!({ "name": name }));
    if let Some(etag) = etag {
        req = req.header("If-Match", etag);
    }
    req.send().await.unwrap()
}

fn etag(resp: &reqwest::Response) -> String {
    resp.headers()["etag"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_editors_with_one_etag_cannot_both_write() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let template = stack.create_template(&tenant, 1, "private").await;
    let id = template.id.to_string();
    let read = stack.get(&tenant, &format!("/templates/{id}")).await;
    let tag = etag(&read);
    assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");

    // Both editors read the same ETag and race: exactly one write wins.
    let (a, b) = tokio::join!(
        patch(&stack, &tenant, &id, Some(&tag), "Alice's"),
        patch(&stack, &tenant, &id, Some(&tag), "Bob's"),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);
    let (winner, loser) = if a.status() == 200 { (a, b) } else { (b, a) };
    let new_tag = etag(&winner);
    assert_ne!(new_tag, tag, "every edit changes the ETag (names too)");
    let body: Value = loser.json().await.unwrap();
    assert_eq!(body["error"]["code"], "precondition_failed");
    // The new ETag works; `*` always does; no If-Match is last-writer-wins.
    assert_eq!(
        patch(&stack, &tenant, &id, Some(&new_tag), "Third")
            .await
            .status(),
        200
    );
    assert_eq!(
        patch(&stack, &tenant, &id, Some("*"), "Fourth")
            .await
            .status(),
        200
    );
    assert_eq!(
        patch(&stack, &tenant, &id, None, "Fifth").await.status(),
        200
    );
    // Replacing images honours it too, and is refused before any byte is stored.
    let stale = stack
        .http
        .put(stack.url(&format!("/templates/{id}/images")))
        .bearer_auth(&tenant.key)
        .header("If-Match", &tag)
        .multipart(image_only_form())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_stay_stable_while_designs_are_made() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 1, "private").await;
    for _ in 0..7 {
        stack.create_design(&tenant, template.id).await;
    }
    let mut seen = Vec::new();
    let mut path = "/designs?limit=3".to_string();
    let mut pages = 0;
    loop {
        let resp = stack.get(&tenant, &path).await;
        assert_eq!(resp.status(), 200);
        let link = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = resp.json().await.unwrap();
        for d in body["designs"].as_array().unwrap() {
            seen.push(d["id"].as_str().unwrap().to_string());
        }
        pages += 1;
        if pages == 1 {
            // Designs made after the first page never shift the next ones.
            for _ in 0..3 {
                stack.create_design(&tenant, template.id).await;
            }
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => {
                let link = link.expect("a Link header with the next page");
                assert!(
                    link.contains(cursor) && link.ends_with("rel=\"next\""),
                    "{link}"
                );
                path = format!("/designs?limit=3&cursor={cursor}");
            }
            None => {
                assert!(link.is_none());
                break;
            }
        }
    }
    assert_eq!(
        seen.len(),
        7,
        "each of the first 7 once, none of the later 3"
    );
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7);
    // Offsets still work (deprecated); a forged cursor is a 400.
    let by_offset: Value = stack
        .get(&tenant, "/designs?limit=2&offset=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_offset["designs"].as_array().unwrap().len(), 2);
    assert_eq!(stack.get(&tenant, "/designs?cursor=zz").await.status(), 400);
    assert_eq!(
        stack
            .get(&tenant, "/templates?cursor=00&offset=1")
            .await
            .status(),
        400
    );
    // With a cursor, `offset` skips rows after the cursor's; it is bounded.
    let ids = |body: &Value| -> Vec<String> {
        body["designs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all: Value = stack
        .get(&tenant, "/designs?limit=10")
        .await
        .json()
        .await
        .unwrap();
    let first: Value = stack
        .get(&tenant, "/designs?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap();
    let skipped: Value = stack
        .get(
            &tenant,
            &format!("/designs?limit=2&cursor={cursor}&offset=1"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&skipped), ids(&all)[3..5].to_vec());
    assert_eq!(
        stack.get(&tenant, "/designs?offset=10001").await.status(),
        400
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_fetch_the_designs_own_objects() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let created = stack
        .http
        .post(stack.url("/designs?include=urls"))
        .bearer_auth(&tenant.key)
        .json(&json!({ "template_id": template.id }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert!(created["urls_expire_at"].is_string(), "{created}");
    let id = created["id"].as_str().unwrap();
    let read: Value = stack
        .get(&tenant, &format!("/designs/{id}?include=urls"))
        .await
        .json()
        .await
        .unwrap();
    let plain: Value = stack
        .get(&tenant, &format!("/designs/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        plain["images"][0].get("url").is_none(),
        "no URLs unless asked"
    );
    for (i, image) in read["images"].as_array().unwrap().iter().enumerate() {
        let url = image["url"].as_str().unwrap();
        assert!(
            url.contains("X-Amz-Signature") && url.contains("X-Amz-Expires=900"),
            "{url}"
        );
        // No credentials but the URL's own signature.
        let fetched = reqwest::get(url).await.unwrap();
        assert_eq!(fetched.status(), 200, "{url}");
        // Served as a download of opaque bytes, never as active content.
        let header = |name: &str| fetched.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("content-type"), "application/octet-stream");
        assert_eq!(header("content-disposition"), "attachment");
        let bytes = fetched.bytes().await.unwrap();
        let stored = stack
            .objects
            .get(image["object_key"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(bytes, stored, "image {i}");
        assert_eq!(
            bytes.as_ref(),
            prewarm_tests::images::png(i, 256).as_slice()
        );
    }
    assert_eq!(
        stack
            .get(&tenant, &format!("/designs/{id}?include=everything"))
            .await
            .status(),
        400
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_listed_without_secrets_revoked_everywhere_at_once_and_rotated_with_grace() {
    let mut stack = TestStack::spawn(Options {
        worker: false,
        // A long cache: only the published revocation can stop a cached key.
        env: vec![("PREWARM_SERVER__AUTH_CACHE_TTL_SECS".into(), "600".into())],
        ..Options::default()
    })
    .await;
    let second = stack.spawn_second_api(&[]).await;
    stack.wait_subscribed(2).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(&stack.admin_token).send();
    let list = || async {
        let resp = admin(
            stack
                .http
                .get(stack.url(&format!("/admin/companies/{}/api-keys", tenant.id))),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["api_keys"].clone()
    };
    let keys = list().await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let text = keys.to_string();
    assert!(!text.contains(&tenant.key), "never the secret: {text}");
    assert_eq!(
        keys[0]["hint"].as_str().unwrap(),
        format!("{}…", &tenant.key[..8])
    );
    let key_id = keys[0]["id"].as_str().unwrap().to_string();

    // Rotate: a new key; the old one keeps working for its grace period.
    let rotated = admin(
        stack
            .http
            .post(stack.url(&format!("/admin/api-keys/{key_id}/rotate")))
            .json(&json!({ "grace_secs": 2 })),
    )
    .await
    .unwrap();
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.unwrap();
    let new = Tenant {
        id: tenant.id,
        key: rotated["new_key"]["api_key"].as_str().unwrap().to_string(),
    };
    for base in [&stack.base, &second] {
        for who in [&tenant, &new] {
            let resp = stack
                .http
                .get(format!("{base}/designs"))
                .bearer_auth(&who.key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    }
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    for base in [&stack.base, &second] {
        let old = stack
            .http
            .get(format!("{base}/designs"))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .unwrap();
        assert_eq!(old.status(), 401, "the old key ended with its grace period");
    }
    let keys = list().await;
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(keys[0]["expires_at"].is_string());

    // Revoke the new key through one replica: both refuse it at once,
    // although both have it cached for ten minutes.
    let new_id = rotated["new_key"]["id"].as_str().unwrap();
    let revoked = admin(
        stack
            .http
            .delete(stack.url(&format!("/admin/api-keys/{new_id}"))),
    )
    .await
    .unwrap();
    assert_eq!(revoked.status(), 204);
    let refused = join_all([&stack.base, &second].map(|base| {
        let url = format!("{base}/designs");
        let (http, key) = (stack.http.clone(), new.key.clone());
        async move {
            // The revocation crosses Redis pub/sub: allow it a moment.
            for _ in 0..50 {
                let status = http
                    .get(&url)
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap()
                    .status();
                if status == 401 {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    }))
    .await;
    assert_eq!(
        refused,
        vec![true, true],
        "revoked on every replica within a second"
    );
    let keys = list().await;
    assert!(keys[1]["revoked_at"].is_string(), "{keys}");
    let unknown = admin(
        stack
            .http
            .delete(stack.url(&format!("/admin/api-keys/{}", uuid::Uuid::new_v4()))),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_racing_a_revocation_does_not_cache_the_revoked_key() {
    let stack = TestStack::spawn(Options {
        worker: false,
        env: vec![("PREWARM_SERVER__AUTH_CACHE_TTL_SECS".into(), "600".into())],
        ..Options::default()
    })
    .await;
    stack.wait_subscribed(1).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let keys: Value = stack
        .http
        .get(stack.url(&format!("/admin/companies/{}/api-keys", tenant.id)))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = keys["api_keys"][0]["id"].as_str().unwrap().to_string();
    // A request finds the key valid in Postgres and stops before caching it...
    let mut gate = stack.pause.arm(prewarm_store::pause::at::AUTH_LOOKED_UP);
    let request = {
        let (http, url, key) = (
            stack.http.clone(),
            stack.url("/designs"),
            tenant.key.clone(),
        );
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    gate.reached().await;
    // ... the key is revoked meanwhile (on the same replica) ...
    let revoked = stack
        .http
        .delete(stack.url(&format!("/admin/api-keys/{key_id}")))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    gate.release();
    // ... that request was already in, but its stale answer is not cached.
    assert_eq!(request.await.unwrap(), 200);
    let after = stack.get(&tenant, "/designs").await;
    assert_eq!(
        after.status(),
        401,
        "the revoked key was cached by the racing lookup"
    );
    stack.finish().await;
}
