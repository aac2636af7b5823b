//! `gc-pass`: runs the garbage collector over the configured bucket and
//! ledger (`PREWARM_*` settings, as the worker reads them) pass after pass
//! until it has walked every prefix once (or `GC_PASS_MAX_PAGES` listing
//! pages, when set), then prints one JSON line: time,
//! passes, pages, keys scanned and deleted, and the process's resident
//! memory before the first pass and at its peak. Its own process, so the
//! peak is the GC's alone (`prewarm-bench`'s scale scenario runs it).

use std::time::Instant;

fn kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    prewarm_service_kit::cli::About {
        name: "gc-pass",
        what: "walks the bucket once with the worker's garbage collector and prints one JSON line of its cost (prewarm-bench's scale scenario)",
        subcommands: &[],
        flags: &[],
        settings: "the worker's PREWARM_* settings (docs/configuration.md); GC_PASS_MAX_PAGES bounds the walk",
    }
    .intercept();
    let settings = warmup_worker::settings::load()?;
    let worker = warmup_worker::startup::Worker::build(settings).await?;
    let gc = worker.reconciler();
    // The peak from here on: "5" resets VmHWM to the current RSS (Linux 4.0+).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let baseline = kib("VmRSS:");
    let max_pages: usize = std::env::var("GC_PASS_MAX_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let started = Instant::now();
    let (mut passes, mut pages, mut scanned, mut deleted) = (0, 0, 0, 0);
    let (mut list, mut check) = (0.0, 0.0);
    loop {
        let report = gc.gc().await?;
        if report.skipped {
            anyhow::bail!("another replica holds the GC lease");
        }
        passes += 1;
        pages += report.pages;
        scanned += report.scanned;
        deleted += report.deleted;
        list += report.list_time.as_secs_f64();
        check += report.check_time.as_secs_f64();
        if report.finished || pages >= max_pages {
            break;
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "secs": started.elapsed().as_secs_f64(),
            "passes": passes,
            "pages": pages,
            "scanned": scanned,
            "deleted": deleted,
            "list_secs": list,
            "check_secs": check,
            "baseline_rss_kib": baseline,
            "peak_rss_kib": kib("VmHWM:"),
        })
    );
    Ok(())
}
