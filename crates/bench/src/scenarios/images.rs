//! Scenario 3b: the warm path with templates of 1 and 200 images: is its
//! cost flat in the image count?

use super::prefill::prefill_template;
use super::CpuRows;
use crate::load::{closed_loop, RunResult};
use crate::services::{cpu_by_command, cpu_per_request};
use crate::setup::Bench;

/// One image count's warm runs: 1 client, 64 clients, and CPU per design
/// (all processes) at 64 clients.
pub struct ImagesRun {
    pub images: usize,
    pub one: RunResult,
    pub many: RunResult,
    pub cpu_ms: f64,
}

/// Scenario 3b: the warm path with templates of 1 and 200 images (30 is the
/// main template): is its cost flat in the image count?
pub async fn images(b: &Bench, cpu_rows: &mut CpuRows) -> anyhow::Result<Vec<ImagesRun>> {
    let (n1, n64) = b.sizes.images_requests;
    let mut out = Vec::new();
    for images in [1usize, 200] {
        let items = n1 + n64 + 20;
        let template = prefill_template(b, images, items).await?;
        // Settled as the 30-image runs are: the prefill's writes (200 x
        // 1,020 copies recorded) are vacuumed and checkpointed now, not in
        // the middle of the measured runs.
        b.settle().await?;
        b.warm_keys(&b.base).await?;
        let pick = b.many();
        let one = closed_loop(1, n1, move || {
            let c = pick();
            async move { c.post_design(template).await }
        })
        .await;
        let pick = b.many();
        let before = cpu_by_command();
        let many = closed_loop(64, n64, move || {
            let c = pick();
            async move { c.post_design(template).await }
        })
        .await;
        let cpu = cpu_per_request(&before, &cpu_by_command(), many.count());
        let cpu_ms = cpu.iter().map(|(_, ms)| ms).sum();
        cpu_rows.push((format!("warm, {images} images, 64 clients"), cpu));
        eprintln!(
            "warm {images} images: p50@1 {:.2} ms, {:.0}/s @64, {cpu_ms:.2} ms CPU",
            one.ms(0.5),
            many.throughput()
        );
        out.push(ImagesRun {
            images,
            one,
            many,
            cpu_ms,
        });
    }
    Ok(out)
}
