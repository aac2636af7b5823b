//! The API calls every scenario makes: upload a template, post a design.

use anyhow::{bail, Context};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::load::Outcome;

/// Uploads a template (`metadata` as the JSON part) with `images` generated
/// images of `image_bytes` each; returns its id.
pub async fn upload_template(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    metadata: &Value,
    images: usize,
    image_bytes: usize,
) -> anyhow::Result<String> {
    let mut form = Form::new().part(
        "metadata",
        Part::text(metadata.to_string()).mime_str("application/json")?,
    );
    for i in 0..images {
        form = form.part(
            "image",
            Part::bytes(png_like(i, image_bytes))
                .file_name(format!("{i}.png"))
                .mime_str("image/png")?,
        );
    }
    let resp = http
        .post(format!("{base}/templates"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await?;
    if resp.status().as_u16() != 201 {
        bail!("template upload failed: {}", resp.text().await?);
    }
    let t: Value = resp.json().await?;
    Ok(t["id"].as_str().context("template id")?.to_string())
}

/// `GET /healthz`: a handler that does nothing, so what HTTP alone costs
/// through the same client and server.
pub async fn get_healthz(http: &reqwest::Client, base: &str) -> Outcome {
    let ok = match http.get(format!("{base}/healthz")).send().await {
        Ok(r) => {
            let ok = r.status().is_success();
            // Drain the body so the connection is reused.
            let _ = r.bytes().await;
            ok
        }
        Err(_) => false,
    };
    Outcome { ok, warm: false }
}

/// `POST /designs`; `warm` when it was served from the pool.
pub async fn post_design(http: &reqwest::Client, base: &str, key: &str, template: &str) -> Outcome {
    let resp = http
        .post(format!("{base}/designs"))
        .bearer_auth(key)
        .json(&json!({ "template_id": template }))
        .send()
        .await;
    match resp {
        Ok(r) if r.status().as_u16() == 201 => {
            let warm = r
                .headers()
                .get("x-served-from")
                .is_some_and(|v| v == "pool");
            // Drain the body so the connection is reused.
            let _ = r.bytes().await;
            Outcome { ok: true, warm }
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            eprintln!("design request failed: {status} {body}");
            Outcome {
                ok: false,
                warm: false,
            }
        }
        Err(e) => {
            eprintln!("design request failed: {e}");
            Outcome {
                ok: false,
                warm: false,
            }
        }
    }
}

/// `len` bytes that the API accepts as a PNG: the signature, then filler.
fn png_like(i: usize, len: usize) -> Vec<u8> {
    let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
    data.resize(len.max(data.len()), (i % 251) as u8);
    data
}
