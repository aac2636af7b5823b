//! Scenario 3b: the warm path with templates of 1, 30 and 200 images: is
//! its cost flat in the image count?

use diesel::sql_types::Double;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::prefill::prefill_template;
use super::CpuRows;
use crate::load::{closed_loop, RunResult};
use crate::services::{cpu_by_command, cpu_per_request};
use crate::setup::Bench;

/// The image counts compared.
pub const IMAGE_COUNTS: [usize; 3] = [1, 30, 200];

/// Rounds of 64-client runs, one per image count in each round; the run
/// with the median CPU is reported per count.
const CPU_ROUNDS: usize = 5;

/// One image count's warm runs: 1 client, 64 clients, and CPU per design
/// (all processes) at 64 clients (the median of [`CPU_ROUNDS`] runs), with
/// the write-ahead log that run wrote per design.
pub struct ImagesRun {
    pub images: usize,
    pub one: RunResult,
    pub many: RunResult,
    pub cpu_ms: f64,
    pub wal_bytes: f64,
}

/// One 64-client run of one image count: CPU per design (total and by
/// process), WAL bytes per design, and the run.
struct CpuRun {
    cpu_ms: f64,
    cpu: Vec<(String, f64)>,
    wal_bytes: f64,
    run: RunResult,
}

/// Scenario 3b: the warm path with templates of 1, 30 and 200 images: is
/// its cost flat in the image count? Each count gets a template of its own,
/// all prefilled before one settle, so the three compare like with like.
/// Their 64-client runs are interleaved in rounds, each round starting with
/// the next count: whatever drifts during the scenario -- the tables and
/// indexes growing with every design, the pages first written since the
/// checkpoint, the machine's speed -- falls on every count alike. (Run one
/// count after the other, the count measured first read cheapest in every
/// run: 1 image 0.30 ms, then 30 and 200 images 0.37 and 0.36 ms.)
pub async fn images(b: &Bench, cpu_rows: &mut CpuRows) -> anyhow::Result<Vec<ImagesRun>> {
    let (n1, n64) = b.sizes.images_requests;
    let mut templates = Vec::new();
    for images in IMAGE_COUNTS {
        templates.push(prefill_template(b, images, n1 + n64 + 20).await?);
    }
    // The prefills' writes (200 x 1,220 copies recorded in a full run) are vacuumed and
    // checkpointed now, not in the middle of the measured runs.
    b.settle().await?;
    b.warm_keys(&b.base).await?;
    let mut ones = Vec::new();
    for &template in &templates {
        let pick = b.many();
        ones.push(
            closed_loop(1, n1, move || {
                let c = pick();
                async move { c.post_design(template).await }
            })
            .await,
        );
    }
    let mut wal = AsyncPgConnection::establish(&b.db_url).await?;
    let mut runs: Vec<Vec<CpuRun>> = IMAGE_COUNTS.iter().map(|_| Vec::new()).collect();
    for round in 0..CPU_ROUNDS {
        for k in 0..IMAGE_COUNTS.len() {
            let i = (round + k) % IMAGE_COUNTS.len();
            let template = templates[i];
            let pick = b.many();
            let (before, wal_before) = (cpu_by_command(), wal_lsn(&mut wal).await?);
            let run = closed_loop(64, n64 / CPU_ROUNDS, move || {
                let c = pick();
                async move { c.post_design(template).await }
            })
            .await;
            let cpu = cpu_per_request(&before, &cpu_by_command(), run.count());
            let wal_bytes = (wal_lsn(&mut wal).await? - wal_before) / run.count().max(1) as f64;
            runs[i].push(CpuRun {
                cpu_ms: cpu.iter().map(|(_, ms)| ms).sum(),
                cpu,
                wal_bytes,
                run,
            });
        }
    }
    let mut out = Vec::new();
    for ((images, one), mut runs) in IMAGE_COUNTS.into_iter().zip(ones).zip(runs) {
        runs.sort_by(|a, b| a.cpu_ms.total_cmp(&b.cpu_ms));
        let all: Vec<String> = runs.iter().map(|r| format!("{:.2}", r.cpu_ms)).collect();
        let median = runs.swap_remove(CPU_ROUNDS / 2);
        let by_process: Vec<String> = median
            .cpu
            .iter()
            .map(|(p, ms)| format!("{p} {ms:.2}"))
            .collect();
        eprintln!(
            "warm {images} images: p50@1 {:.2} ms, {:.0}/s @64, {:.2} ms CPU ({}; runs: {}), {:.0} WAL bytes per design",
            one.ms(0.5),
            median.run.throughput(),
            median.cpu_ms,
            by_process.join(", "),
            all.join(" "),
            median.wal_bytes
        );
        cpu_rows.push((format!("warm, {images} images, 64 clients"), median.cpu));
        out.push(ImagesRun {
            images,
            one,
            many: median.run,
            cpu_ms: median.cpu_ms,
            wal_bytes: median.wal_bytes,
        });
    }
    Ok(out)
}

/// The server's write-ahead log position, in bytes.
async fn wal_lsn(conn: &mut AsyncPgConnection) -> anyhow::Result<f64> {
    Ok(diesel::select(diesel::dsl::sql::<Double>(
        "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8",
    ))
    .get_result(conn)
    .await?)
}
