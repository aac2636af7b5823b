//! Scenario 3b: the warm path with templates of 1, 30 and 200 images: is
//! its cost flat in the image count?

use super::prefill::prefill_template;
use super::CpuRows;
use crate::load::{closed_loop, RunResult};
use crate::services::{cpu_by_command, cpu_per_request};
use crate::setup::Bench;

/// The image counts compared.
pub const IMAGE_COUNTS: [usize; 3] = [1, 30, 200];

/// The 64-client runs per image count; the one with the median CPU is reported.
const CPU_REPEATS: usize = 3;

/// One image count's warm runs: 1 client, 64 clients, and CPU per design
/// (all processes) at 64 clients (the median of [`CPU_REPEATS`] runs).
pub struct ImagesRun {
    pub images: usize,
    pub one: RunResult,
    pub many: RunResult,
    pub cpu_ms: f64,
}

/// Scenario 3b: the warm path with templates of 1, 30 and 200 images: is
/// its cost flat in the image count? Each count gets a template of its own
/// made and measured the same way (prefill, settle, 1 client, then 64
/// clients measured for CPU), so the three compare like with like: the
/// main template's 64-client run is longer and follows the floor's, and
/// a short run right after a checkpoint pays more of its first page writes
/// per design (one run here read 0.33 ms for the main template against
/// 0.41 ms for 1 image, Postgres 0.17 against 0.25).
pub async fn images(b: &Bench, cpu_rows: &mut CpuRows) -> anyhow::Result<Vec<ImagesRun>> {
    let (n1, n64) = b.sizes.images_requests;
    let mut out = Vec::new();
    for images in IMAGE_COUNTS {
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
        // CPU per design from the median of a few shorter runs: one short
        // run reads a Postgres share that varies by a third from run to run.
        let mut runs = Vec::new();
        for _ in 0..CPU_REPEATS {
            let pick = b.many();
            let before = cpu_by_command();
            let run = closed_loop(64, n64 / CPU_REPEATS, move || {
                let c = pick();
                async move { c.post_design(template).await }
            })
            .await;
            let cpu = cpu_per_request(&before, &cpu_by_command(), run.count());
            let cpu_ms: f64 = cpu.iter().map(|(_, ms)| ms).sum();
            runs.push((cpu_ms, cpu, run));
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (cpu_ms, cpu, many) = runs.swap_remove(CPU_REPEATS / 2);
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
