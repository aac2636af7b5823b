//! The report `prewarm-bench` writes (docs/benchmarks.md, or `--out`):
//! targets, tables per scenario, memory, the latency plot.

use crate::load::RunResult;
use crate::report::{self, verdict};
use crate::scenarios::{CpuRows, Prefill, Steady, SteadyRun, Warm};
use crate::setup::{
    git_commit, machine, Bench, IMAGES, IMAGE_BYTES, TENANTS, WORKER_COPY_CONCURRENCY,
};

/// Everything the scenarios measured.
pub struct Results {
    pub prefill: Prefill,
    pub floor_runs: Vec<(usize, RunResult)>,
    /// The old model's floor (a design and its 30 image rows).
    pub old_floor_runs: Vec<(usize, RunResult)>,
    pub floor_alone: RunResult,
    /// CPU milliseconds a second of each process, idle (`services::idle_cpu`).
    pub idle: Vec<(String, f64)>,
    /// Warm runs with 1, 30 and 200 images, each on a template of its own.
    pub images: Vec<crate::scenarios::ImagesRun>,
    /// The seed's headline: (warm, cold) open loops at the seed's rate.
    pub headline: (RunResult, RunResult),
    pub cpu_rows: CpuRows,
    pub warm: Warm,
    pub cold: RunResult,
    pub cold_peak: Option<f64>,
    pub steady: Steady,
    pub similar: crate::scenarios::similar::Results,
    pub sizing: Vec<crate::scenarios::sizing::ModeResult>,
    pub sizing_params: crate::scenarios::sizing::Params,
    pub scale: Vec<crate::scenarios::scale::SizeResult>,
    pub scale_params: crate::scenarios::scale::Params,
    pub catalogue: crate::scenarios::catalogue::CatalogueRun,
    pub api_peak: Option<f64>,
    pub recommender_peak: Option<f64>,
}

/// Writes the report to `--out` (and prints it).
/// What the sections read, borrowed from the run and its results.
#[derive(Clone, Copy)]
struct View<'a> {
    args: &'a crate::setup::Args,
    sizes: &'a crate::setup::Sizes,
    started_at: chrono::DateTime<chrono::Utc>,
    bench_started: std::time::Instant,
    warm_items: usize,
    fill_time: std::time::Duration,
    copies_per_sec: f64,
    prefill_peak: Option<f64>,
    idle: &'a [(String, f64)],
    floor_runs: &'a [(usize, RunResult)],
    old_floor_runs: &'a [(usize, RunResult)],
    floor_alone: &'a RunResult,
    images: &'a [crate::scenarios::ImagesRun],
    headline: &'a (RunResult, RunResult),
    scale: &'a [crate::scenarios::scale::SizeResult],
    cpu_rows: &'a CpuRows,
    warm_runs: &'a [(usize, RunResult)],
    single: &'a RunResult,
    no_prefetch: &'a RunResult,
    one_id: &'a RunResult,
    /// `GET /healthz` at 1 and 64 clients.
    http: &'a [(usize, RunResult)],
    open: &'a RunResult,
    cold: &'a RunResult,
    cold_peak: Option<f64>,
    steady: &'a [SteadyRun],
    worker_peak: Option<f64>,
    capacity: f64,
    similar: &'a crate::scenarios::similar::Results,
    sizing: &'a [crate::scenarios::sizing::ModeResult],
    sizing_params: &'a crate::scenarios::sizing::Params,
    api_peak: Option<f64>,
    recommender_peak: Option<f64>,
    f8: &'a RunResult,
    w8: &'a RunResult,
    f64_: &'a RunResult,
    w64: &'a RunResult,
    ratio: f64,
}

/// Writes the report to `--out` (and prints it).
pub fn write(b: &Bench, r: &Results) -> anyhow::Result<()> {
    let (floor_runs, warm_runs) = (&r.floor_runs, &r.warm.runs);
    let (f8, w8) = (&floor_runs[1].1, &warm_runs[1].1);
    let (f64_, w64) = (&floor_runs[2].1, &warm_runs[2].1);
    let v = View {
        args: &b.args,
        sizes: &b.sizes,
        started_at: b.started_at,
        bench_started: b.bench_started,
        warm_items: r.prefill.warm_items,
        fill_time: r.prefill.fill_time,
        copies_per_sec: r.prefill.copies_per_sec,
        prefill_peak: r.prefill.worker_peak,
        idle: &r.idle,
        floor_runs,
        old_floor_runs: &r.old_floor_runs,
        floor_alone: &r.floor_alone,
        images: &r.images,
        headline: &r.headline,
        scale: &r.scale,
        cpu_rows: &r.cpu_rows,
        warm_runs,
        single: &r.warm.single,
        no_prefetch: &r.warm.no_prefetch,
        one_id: &r.warm.one_id,
        http: &r.warm.http,
        open: &r.warm.open,
        cold: &r.cold,
        cold_peak: r.cold_peak,
        steady: &r.steady.runs,
        worker_peak: r.steady.worker_peak,
        capacity: r.steady.capacity,
        similar: &r.similar,
        sizing: &r.sizing,
        sizing_params: &r.sizing_params,
        api_peak: r.api_peak,
        recommender_peak: r.recommender_peak,
        f8,
        w8,
        f64_,
        w64,
        ratio: r.headline.1.ms(0.95) / r.headline.0.ms(0.95).max(0.001),
    };
    let mut md = String::new();
    header(&mut md, &v);
    targets(&mut md, &v);
    seed_case(&mut md, &v);
    floor_vs_warm(&mut md, &v);
    sustained(&mut md, &v);
    similar(&mut md, &v);
    sizing(&mut md, &v);
    md.push_str("\n## Scale: background passes by catalogue size\n\n");
    md.push_str(&crate::scenarios::scale::report(&r.scale_params, &r.scale));
    md.push_str("\n## Catalogue: sizing strategies against the offline optimum\n\n");
    md.push_str(&crate::scenarios::catalogue::report(&r.catalogue));
    memory(&mut md, &v);
    let args = &b.args;
    std::fs::write(&args.out, &md)?;
    println!("{md}");

    Ok(())
}

/// The report's header section.
fn header(md: &mut String, v: &View) {
    let View {
        args,
        started_at,
        bench_started,
        ..
    } = *v;
    md.push_str("# Benchmarks\n\n");
    md.push_str(&format!(
        "Written by `prewarm-bench{}` (`make bench{}`) on {} at commit `{}`, in {:.0} s.\n\n",
        if args.quick { " --quick" } else { "" },
        if args.quick { "-quick" } else { "" },
        started_at.format("%Y-%m-%d %H:%M UTC"),
        git_commit(),
        bench_started.elapsed().as_secs_f64()
    ));
    md.push_str(&format!(
        "Machine: {}. Everything runs on it at once: PostgreSQL 15, Redis 7, tansu (Kafka), s3s-fs (S3) behind \
         the fault-injecting proxy (`crates/testkit/src/fault_proxy.rs`), the release binaries, and the load generator. \
         Template: {IMAGES} images of {} KiB. Injected S3 latency: {} ms per request.\n\n",
        machine(),
        IMAGE_BYTES / 1024,
        args.delay.as_millis()
    ));
}

/// The report's targets section: the ratios of ARCHITECTURE section 4, each
/// measured side by side in this run.
fn targets(md: &mut String, v: &View) {
    let mut rows = warm_path_rows(v);
    rows.extend(similar_rows(v));
    rows.extend(scale_rows(v.scale));
    md.push_str("## Targets\n\nEvery target is a ratio of two figures measured side by side in this run (ARCHITECTURE section 4).\n\n");
    md.push_str(&report::simple_table(
        &["target", "measured", "verdict"],
        &rows,
    ));
}

/// Warm CPU per design at 64 clients by image count, sorted by image count,
/// and its spread (highest over lowest).
fn cpu_by_images(v: &View) -> (Vec<(usize, f64, f64)>, f64) {
    // CPU per design at 64 clients by image count, each from its own
    // template run the same way (`scenarios::images`), and WAL bytes.
    let mut cpu: Vec<(usize, f64, f64)> = v
        .images
        .iter()
        .map(|r| (r.images, r.cpu_ms, r.wal_bytes))
        .collect();
    cpu.sort_by_key(|(n, _, _)| *n);
    let (lo, hi) = cpu.iter().fold((f64::MAX, 0.0f64), |(lo, hi), (_, ms, _)| {
        (lo.min(*ms), hi.max(*ms))
    });
    let flat = hi / lo.max(1e-9);
    (cpu, flat)
}

/// `f` of the `GET /healthz` run at `clients`, or "not run".
fn http_alone(v: &View, clients: usize, f: impl Fn(&RunResult) -> String) -> String {
    v.http
        .iter()
        .find(|(c, _)| *c == clients)
        .map_or_else(|| "not run".to_string(), |(_, r)| f(r))
}

/// The targets table's warm-path rows: the seed's case, latency and
/// throughput against the floor, CPU by image count, and the warm hit rate.
fn warm_path_rows(v: &View) -> Vec<Vec<String>> {
    let View {
        sizes,
        steady,
        floor_runs,
        warm_runs,
        f64_,
        w64,
        ratio,
        headline,
        ..
    } = *v;
    let (f1, w1) = (&floor_runs[0].1, &warm_runs[0].1);
    let p50_ratio = w1.ms(0.5) / f1.ms(0.5).max(1e-9);
    let share = w64.throughput() / f64_.throughput().max(1e-9);
    let (cpu, flat) = cpu_by_images(v);
    vec![
        vec![
            format!(
                "seed's case: cold p95 / warm p95 >= 100 (open loop {} designs/s, {} images, {} ms per copy)",
                sizes.headline_rate,
                crate::setup::IMAGES,
                v.args.delay.as_millis()
            ),
            format!(
                "{ratio:.0}x ({:.0} ms / {:.2} ms)",
                headline.1.ms(0.95),
                headline.0.ms(0.95)
            ),
            verdict(ratio >= 100.0).into(),
        ],
        vec![
            "warm p50 at 1 client <= 1.2x the floor's".into(),
            format!(
                "{p50_ratio:.2}x ({:.2} ms vs {:.2} ms; one id held at a time: {:.2}x; prefetching off: {:.2}x; HTTP alone, `GET /healthz`: {})",
                w1.ms(0.5),
                f1.ms(0.5),
                v.one_id.ms(0.5) / f1.ms(0.5).max(1e-9),
                v.no_prefetch.ms(0.5) / f1.ms(0.5).max(1e-9),
                http_alone(v, 1, |r| format!("{:.2} ms", r.ms(0.5)))
            ),
            verdict(p50_ratio <= 1.2).into(),
        ],
        vec![
            "warm throughput at 64 clients >= 80% of the floor's".into(),
            format!(
                "{:.0}% ({:.0}/s vs {:.0}/s; HTTP alone: {})",
                share * 100.0,
                w64.throughput(),
                f64_.throughput(),
                http_alone(v, 64, |r| format!("{:.0}/s", r.throughput()))
            ),
            verdict(share >= 0.8).into(),
        ],
        vec![
            "warm CPU per design flat in the image count (1, 30, 200 within 1.2x)".into(),
            format!(
                "{flat:.2}x ({})",
                cpu.iter()
                    .map(|(n, ms, wal)| format!("{n}: {ms:.2} ms, {wal:.0} B WAL"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            verdict(flat <= 1.2).into(),
        ],
        vec![
            format!(
                "warm hit rate >= 99% below worker capacity ({} req/s)",
                sizes.low_rate
            ),
            format!("{:.1}%", steady[0].1.warm_share() * 100.0),
            verdict(steady[0].1.warm_share() >= 0.99).into(),
        ],
    ]
}

/// The targets table's similar-templates rows: cached latency against the
/// HTTP floor, and the stampede of concurrent misses on one key.
fn similar_rows(v: &View) -> Vec<Vec<String>> {
    let View { sizes, similar, .. } = *v;
    let http_floor = similar.http_floor.ms(0.99);
    vec![
        vec![
            format!(
                "similar templates: cached p99 <= HTTP floor p99 (GET /healthz, same client, {} req/s) + 0.2 ms",
                sizes.open_rate
            ),
            format!(
                "{:.2} ms vs {:.2} + 0.2 ms (uncached p50 {:.0} ms)",
                similar.cached.ms(0.99),
                http_floor,
                similar.uncached.ms(0.5)
            ),
            verdict(similar.cached.ms(0.99) <= http_floor + 0.2).into(),
        ],
        vec![
            "similar templates: 1,000 concurrent misses on one key -> 1 upstream call".into(),
            format!("{} call(s)", similar.stampede_calls),
            verdict(similar.stampede_calls == 1).into(),
        ],
    ]
}

/// The targets table's scale rows (when two catalogue sizes ran): the
/// background passes' growth, and the GC's memory.
fn scale_rows(scale: &[crate::scenarios::scale::SizeResult]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    if let [small, large] = scale {
        let growth = crate::scenarios::scale::Growth::of(small, large);
        let mem = |r: &crate::scenarios::scale::SizeResult| r.gc_mem_kib();
        rows.push(vec![
            format!(
                "background passes at {} templates < 3x the same at {} (few changed)",
                large.templates, small.templates
            ),
            format!(
                "reconciler {:.2}x, sizer {:.2}x, pool-depth metrics {:.2}x, GC ledger checks per \
                 page {:.2}x",
                growth.reconcile, growth.sizer, growth.depths, growth.gc_page
            ),
            verdict(growth.bounded()).into(),
        ]);
        rows.push(vec![
            "GC memory bounded by one listing page, not by the bucket".into(),
            format!(
                "{:.1} MiB over {} objects vs {:.1} MiB over {} ({:.2}x)",
                mem(small) / 1024.0,
                small.gc.scanned,
                mem(large) / 1024.0,
                large.gc.scanned,
                growth.gc_mem
            ),
            verdict(growth.gc_mem < 3.0).into(),
        ]);
    }
    rows
}

/// The report's seed case section.
fn seed_case(md: &mut String, v: &View) {
    let View {
        args,
        sizes,
        cold,
        w64,
        headline,
        ..
    } = *v;
    md.push_str(&format!(
        "\n## 1. The seed's case: warm vs cold at {} designs/s\n\n",
        sizes.headline_rate
    ));
    md.push_str(&report::table(&[
        ("warm (pool), open loop", &headline.0),
        (
            "cold (pool off: 30 copies per request), open loop",
            &headline.1,
        ),
        ("warm, 64 closed-loop clients", w64),
        ("cold, 64 closed-loop clients", cold),
    ]));
    md.push_str(&format!(
        "\nThe open loops run at the seed's own load, below the worker's copy capacity; the 64-client closed \
         loops measure queueing on 2 cores as much as the product, and are kept for comparison. Cold copies go \
         through the proxy with {} ms per CopyObject, at most 16 in parallel per request and 256 per API \
         process. The warm path touches no S3 at all. Before each run every tenant's key is made known to the \
         API it calls (one authenticated read each), as in a steady state where a key comes back well within \
         `server.auth_cache_ttl_secs`.\n",
        args.delay.as_millis()
    ));
}

/// The report's floor vs warm section.
fn floor_vs_warm(md: &mut String, v: &View) {
    let View {
        sizes,
        floor_runs,
        old_floor_runs,
        floor_alone,
        images,
        cpu_rows,
        warm_runs,
        single,
        open,
        f64_,
        w64,
        ..
    } = *v;
    md.push_str("\n## 2. The physical floor vs the warm path\n\n");
    md.push_str("The floor is the least durable work a warm design needs: one Redis `LPOP` plus one Postgres round \
                 trip committing the rows the data model writes (the pool item flipped to `used`, the company's \
                 plan counter, one design row referencing the item: one statement, a function called as a cached \
                 prepared statement, as the warm path calls its claim), sent by a minimal client (diesel-async, \
                 no HTTP, no template check) and spread over the same 64 companies as the warm path's load. \
                 The old model's floor -- a transaction writing a design row and its 30 image rows -- is shown \
                 beside it. The warm path is `POST /designs` end to end: HTTP, API-key lookup (cached), `LPOP`, \
                 and the claim statement (one round trip; it checks the template itself: no template read); its \
                 load comes from 64 companies. With `serving.prefetch_hold_ms` (on by default) the `LPOP` of a \
                 design's id was sent while the previous design's claim was in flight, so a warm design waits \
                 on one round trip, the floor on two. The floor pays one `LPOP` per design; the warm path pops its \
                 ids ahead in batches (`serving.prefetch_batch`: one id, doubling while used up within the hold, \
                 up to 8), so at a steady load it sends one pop script per 8 designs. Both take their Postgres connection from the same kind of pool, \
                 which skips the `SELECT 1` check of a connection used within `database.check_idle_ms`. The \
                 API's pool and Redis connections are those of the actix worker thread serving the request, so \
                 their I/O runs on that thread, as the floor's runs on its own runtime. The 1-client runs of the \
                 floor, the warm path and the warm path holding one id ahead at a time (a second API, \
                 `serving.prefetch_batch` = 1) are made of 4 rounds, each one chunk of every one of them, the \
                 first rotating, so that the machine's drift falls on all alike; the 64-client runs of the \
                 floor and the warm path likewise, the floor's 64 clients sharing a pool of as many \
                 connections as the API's (32) -- the floor run alone at 64 clients on 66 connections, as \
                 it was before the rounds, is kept as a reference row; the other runs follow one \
                 another.\n\n");
    let mut rows: Vec<(String, &RunResult)> = Vec::new();
    for ((c, f), (_, w)) in floor_runs.iter().zip(warm_runs.iter()) {
        rows.push((format!("floor, {c} clients"), f));
        rows.push((format!("warm, {c} clients"), w));
    }
    rows.push((
        "floor, 64 clients on 66 connections, run alone (reference)".into(),
        floor_alone,
    ));
    for (c, f) in old_floor_runs {
        rows.push((
            format!("old floor (design + 30 image rows), {c} clients"),
            f,
        ));
    }
    for (c, r) in v.http {
        rows.push((format!("HTTP alone (`GET /healthz`), {c} clients"), r));
    }
    rows.push((
        "warm, 1 client, one id held at a time (`serving.prefetch_batch` = 1)".to_string(),
        v.one_id,
    ));
    rows.push((
        "warm, 1 client, prefetching off (`serving.prefetch_hold_ms` = 0)".to_string(),
        v.no_prefetch,
    ));
    rows.push(("warm, 64 clients, all from one company".to_string(), single));
    rows.push((format!("warm, open loop {} req/s", sizes.open_rate), open));
    for r in images {
        rows.push((format!("warm, {} images, 1 client", r.images), &r.one));
        rows.push((format!("warm, {} images, 64 clients", r.images), &r.many));
    }
    let rows_ref: Vec<(&str, &RunResult)> = rows.iter().map(|(l, r)| (l.as_str(), *r)).collect();
    md.push_str(&report::table(&rows_ref));
    md.push_str("\n### Where the time goes\n\nCPU milliseconds per request, by process, over each run (in nanoseconds from each thread's `/proc/*/task/*/schedstat`, or from `/proc/*/stat`'s 10 ms ticks for a process whose threads exited during the run; \
                 all processes share the same 2 cores, so CPU per request bounds throughput; counted per process, so a \
                 process that exits during a run is left out rather than subtracted). Each latency scenario starts on \
                 a settled database (`VACUUM ANALYZE` and a `CHECKPOINT` before it):\n\n");
    for (label, rows) in cpu_rows.iter() {
        let parts: Vec<String> = rows.iter().map(|(k, ms)| format!("{k} {ms:.2}")).collect();
        let total: f64 = rows.iter().map(|(_, ms)| ms).sum();
        md.push_str(&format!(
            "- {label}: **{total:.2} ms** = {}\n",
            parts.join(", ")
        ));
    }
    let of = |label: &str, process: &str| {
        cpu_rows
            .iter()
            .find(|(l, _)| l == label)
            .and_then(|(_, rows)| rows.iter().find(|(k, _)| k == process).map(|(_, ms)| *ms))
            .unwrap_or(0.0)
    };
    md.push_str(&format!(
        "\n### Reading the figures\n\n\
         - At 64 clients every process is CPU-bound on the same 2 cores, so throughput is 2 cores / CPU per \
         design. The warm path costs Postgres {:.2} ms of CPU per design against the floor's {:.2} ms (one \
         statement each; the claim function also checks the template row); template-api adds {:.2} ms (HTTP, auth, JSON of the design, a warm-up request: one Kafka message \
         per template version per `serving.warmup_coalesce_ms`, not one per design), the load \
         generator and Redis the rest. Warm: {:.0}/s, floor: {:.0}/s.\n\
         - HTTP alone: `GET /healthz`, a handler that does nothing, through the same client takes p50 {} at 1 \
         client and serves {} at 64 clients on this machine. The floor sends no HTTP: the floor's p50 plus that \
         ({}) is the least a warm design can take through an HTTP API here; warm takes {:.2} ms. The client is \
         the load generator's own (reqwest on tokio, sharing the 2 cores with the server), so the figure \
         includes its cost and moves with the VM's wake-up latency: `wrk -t1 -c1` against the same binary \
         read 0.068 ms where this row read 0.02 ms on one machine, and 0.05 ms where it read 0.10 ms on \
         another. Compare it with the floor and warm rows of the same run only.\n\
         - One company's designs are serialized by its plan-limit row (held from the increment to the \
         commit's WAL flush): 64 clients of one company reach {:.0} req/s against {:.0} req/s spread over \
         {TENANTS} companies. An exact per-company limit needs that serialization.\n",
        of("warm, 64 clients", "postgres"),
        of("floor, 64 clients", "postgres"),
        of("warm, 64 clients", "template-api"),
        w64.throughput(),
        f64_.throughput(),
        http_alone(v, 1, |r| format!("{:.2} ms", r.ms(0.5))),
        http_alone(v, 64, |r| format!("{:.0}/s", r.throughput())),
        http_alone(v, 1, |r| format!(
            "{:.2} ms",
            floor_runs[0].1.ms(0.5) + r.ms(0.5)
        )),
        warm_runs[0].1.ms(0.5),
        single.throughput(),
        w64.throughput(),
    ));
}

/// The report's sustained section.
fn sustained(md: &mut String, v: &View) {
    let View {
        args,
        sizes,
        steady,
        capacity,
        ..
    } = *v;
    md.push_str("\n## 3. Sustained load below and above the worker's copy capacity\n\n");
    md.push_str(&format!(
        "Pool target 4; the worker copies through the proxy ({} ms per copy) with {WORKER_COPY_CONCURRENCY} copies in \
         flight, so its capacity is about {capacity:.1} designs/s for a {IMAGES}-image template.\n\n",
        args.delay.as_millis()
    ));
    let steady_rows: Vec<(String, &RunResult)> = steady
        .iter()
        .map(|(rate, r, _)| {
            (
                format!("open loop {rate} req/s for {} s", sizes.steady_secs),
                r,
            )
        })
        .collect();
    let steady_ref: Vec<(&str, &RunResult)> =
        steady_rows.iter().map(|(l, r)| (l.as_str(), *r)).collect();
    md.push_str(&report::table(&steady_ref));
    md.push_str("\nPool depth (Redis list length) sampled every 250 ms:\n\n");
    for (rate, _, samples) in steady.iter() {
        let series: Vec<String> = samples
            .iter()
            .step_by(2)
            .map(|(_, n)| n.to_string())
            .collect();
        md.push_str(&format!("- {rate} req/s: {}\n", series.join(" ")));
    }
}

/// The report's similar section.
fn similar(md: &mut String, v: &View) {
    let View { sizes, similar, .. } = *v;
    md.push_str("\n## 4. Similar templates: uncached vs cached\n\n");
    md.push_str(&format!(
        "The stand-in recommendation service (`crates/recommender`) answers every call after 900 ms. Uncached: each of \
         {} source templates read once (4 clients), so every request waits for the upstream. Cached: an open loop at \
         {} req/s over the same sources for {} s. Stampede: 1,000 requests at once on one cold key. Here the `warm` \
         column is the share of cache hits.\n\n",
        similar.sources, sizes.open_rate, sizes.similar_secs
    ));
    md.push_str(&report::table(&[
        ("uncached (900 ms upstream)", &similar.uncached),
        ("cached, open loop", &similar.cached),
        (
            "HTTP floor: GET /healthz, same open loop",
            &similar.http_floor,
        ),
        (
            "stampede: 1,000 concurrent on one cold key",
            &similar.stampede,
        ),
    ]));
    md.push_str(&format!(
        "\nUpstream calls made by the stampede, counted at the stand-in service: **{}**.\n\n\
         Where a cached answer's time goes: `GET /healthz` -- a handler that does nothing -- sent by the same client \
         at the same rate takes p50 {:.2} ms / p99 {:.2} ms here, so HTTP through actix and reqwest on this \
         2-core VM (client and server sharing the cores) is most of it; the cache lookups, the per-caller filter \
         and the JSON of 10 templates add {:.2} ms at p50. Where the HTTP floor's own p99 is above 1 ms, the \
         target cannot be met end to end on this machine.\n",
        similar.stampede_calls,
        similar.http_floor.ms(0.5),
        similar.http_floor.ms(0.99),
        (similar.cached.ms(0.5) - similar.http_floor.ms(0.5)).max(0.0),
    ));
}

/// The report's sizing section.
fn sizing(md: &mut String, v: &View) {
    let View {
        sizing,
        sizing_params,
        ..
    } = *v;
    md.push_str("\n## 5. Adaptive pool sizing vs fixed N=4\n\n");
    md.push_str(&crate::scenarios::sizing::report(sizing_params, sizing));
}

/// The report's memory section.
fn memory(md: &mut String, v: &View) {
    let View {
        args,
        warm_items,
        fill_time,
        copies_per_sec,
        prefill_peak,
        open,
        cold,
        cold_peak,
        worker_peak,
        api_peak,
        recommender_peak,
        f8,
        w8,
        w64,
        idle,
        ..
    } = *v;
    md.push_str("\n## Peak memory (VmHWM)\n\n");
    let mib = |m: Option<f64>| {
        m.map(|v| format!("{v:.0} MiB"))
            .unwrap_or_else(|| "n/a".into())
    };
    md.push_str(&report::simple_table(
        &["process", "peak"],
        &[
            vec!["template-api".into(), mib(api_peak)],
            vec!["template-api (pool off, cold run)".into(), mib(cold_peak)],
            vec!["recommender (stand-in)".into(), mib(recommender_peak)],
            vec!["warmup-worker (steady load)".into(), mib(worker_peak)],
            vec![
                format!("warmup-worker (prefill of {warm_items} items)"),
                mib(prefill_peak),
            ],
        ],
    ));
    md.push_str(&format!(
        "\nPrefill: {warm_items} items x {IMAGES} images copied in {:.1} s ({copies_per_sec:.0} copies/s, worker \
         straight to s3s-fs, 128 copies in flight).\n",
        fill_time.as_secs_f64()
    ));
    let idle: Vec<String> = idle
        .iter()
        .map(|(process, ms)| format!("{process} {ms:.2}"))
        .collect();
    md.push_str(&format!(
        "\nIdle: CPU milliseconds a second of each process over 5 s with no request, after the prefill's \
         worker stopped and the database settled (the API, the recommender, the stack and the load \
         generator): {}.\n",
        idle.join(", ")
    ));
    let plot_name = args
        .plot
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    match report::plot(
        &args.plot,
        "POST /designs latency by percentile",
        &[
            ("floor, 8 clients", f8),
            ("warm, 8 clients", w8),
            ("warm, 64 clients", w64),
            ("warm, open loop 200/s", open),
            ("cold, 64 clients", cold),
        ],
    ) {
        Ok(()) => md.push_str(&format!("\n![latency by percentile]({plot_name})\n")),
        Err(e) => md.push_str(&format!("\n(plot not drawn: {e})\n")),
    }
    md.push_str(&format!(
        "\nReproduce: `make up && make bench{}` (the command builds the release binaries, starts s3s-fs, and runs \
         `target/release/prewarm-bench{}`).\n",
        if args.quick { "-quick" } else { "" },
        if args.quick { " --quick" } else { "" }
    ));
}
