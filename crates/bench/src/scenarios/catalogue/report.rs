//! The catalogue scenario's section of the report: the setup, one row per
//! strategy and the oracle's two bounds, what the ledger showed around the
//! events, and how to reproduce it.

use std::fmt::Write;

use super::ledger::Sample;
use super::trace::Event;
use super::{share, windows, CatalogueRun, StrategyRun, WINDOWS};
use crate::load::Outcome;

/// `warm/served` as a share, with the counts.
fn cell(warm: usize, of: usize) -> String {
    if of == 0 {
        return "--".into();
    }
    format!("{:.1}% ({warm}/{of})", warm as f64 * 100.0 / of as f64)
}

/// A strategy's figure over one window (errors noted).
fn measured(outcomes: &[Outcome], window: &[bool]) -> String {
    let (_, (warm, ok, errors)) = share(outcomes, window);
    let mut c = cell(warm, ok);
    if errors > 0 {
        let _ = write!(c, ", {errors} errors");
    }
    c
}

/// The last sample at or before `at` seconds (the first one if none).
fn at(samples: &[(f64, Sample)], at: f64) -> Option<Sample> {
    samples
        .iter()
        .rev()
        .find(|(t, _)| *t <= at)
        .or(samples.first())
        .map(|(_, s)| *s)
}

fn pooled(samples: &[(f64, Sample)]) -> (i64, f64, i64) {
    let objects: Vec<i64> = samples.iter().map(|(_, s)| s.objects).collect();
    (
        objects.first().copied().unwrap_or(0),
        objects.iter().sum::<i64>() as f64 / objects.len().max(1) as f64,
        objects.iter().copied().max().unwrap_or(0),
    )
}

/// The objects the cold designs of `events` copied (their template's
/// images each).
fn cold_copies(r: &CatalogueRun, events: &[Event], outcomes: &[Outcome]) -> u64 {
    events
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| o.ok && !o.warm)
        .map(|(e, _)| u64::from(r.trace.images[e.template]))
        .sum()
}

fn strategy_row(r: &CatalogueRun, s: &StrategyRun, w: &[Vec<bool>; WINDOWS]) -> String {
    let (start, mean, peak) = pooled(&s.samples);
    let designs = s.outcomes.iter().chain(&s.tail).filter(|o| o.ok).count();
    let copies = s.copies.made as u64
        + cold_copies(r, &r.trace.events, &s.outcomes)
        + cold_copies(r, &r.trace.tail, &s.tail);
    let c = &s.copies;
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {start} / {mean:.0} / {peak} | {} + {} + {} = {:.1}% | {} | {:.2} |\n",
        s.strategy.name,
        measured(&s.outcomes, &w[0]),
        measured(&s.outcomes, &w[4]),
        measured(&s.outcomes, &w[1]),
        measured(&s.outcomes, &w[2]),
        measured(&s.outcomes, &w[3]),
        measured(&s.tail, &vec![true; s.tail.len()]),
        c.retired,
        c.unready,
        c.held,
        c.wasted() as f64 * 100.0 / copies.max(1) as f64,
        c.unused,
        copies as f64 / designs.max(1) as f64,
    )
}

fn oracle_rows(r: &CatalogueRun, w: &[Vec<bool>; WINDOWS]) -> String {
    let lower = &r.oracle.lower;
    let count = |k: usize| w[k].iter().filter(|&&x| x).count();
    let served = |k: usize| {
        (0..w[k].len())
            .filter(|&j| w[k][j] && lower.warm[j])
            .count()
    };
    let missed: u64 = r
        .trace
        .events
        .iter()
        .zip(&lower.warm)
        .filter(|(_, &warm)| !warm)
        .map(|(e, _)| u64::from(r.trace.images[e.template]))
        .sum();
    let n = r.trace.events.len().max(1) as f64;
    let mut md = format!(
        "| oracle, feasible schedule (lower bound) | {} | {} | {} | {} | {} | -- | {} / {:.0} / {} | 0 + 0 + 0 = 0.0% | -- | {:.2} |\n",
        cell(served(0), count(0)),
        cell(served(4), count(4)),
        cell(served(1), count(1)),
        cell(served(2), count(2)),
        cell(served(3), count(3)),
        lower.start_objects,
        lower.mean_objects,
        lower.peak_objects,
        (lower.copies + missed) as f64 / n,
    );
    let _ = writeln!(
        md,
        "| oracle, relaxation (upper bound) | {} | {} | {} | {} | {} | -- | -- | -- | -- | -- |",
        cell(r.oracle.upper[0], count(0)),
        cell(r.oracle.upper[4], count(4)),
        cell(r.oracle.upper[1], count(1)),
        cell(r.oracle.upper[2], count(2)),
        cell(r.oracle.upper[3], count(3)),
    );
    md
}

/// The ledger around each event, per strategy.
fn ledger_rows(r: &CatalogueRun) -> String {
    let p = &r.params;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| strategy | peak subset ({} templates): planned items / ready at P-1 s | ready at P+5 / P+15 / P+29 s | launch template ready at L-1 / L+2 / L+10 s | burst's template ready at U-1 s | the trace's misses by the API's cause | refills designs asked for that copied: count, mean lag |",
        r.trace.peak.len()
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|---:|");
    let show =
        |s: Option<Sample>, f: fn(&Sample) -> i64| s.map_or("--".into(), |s| f(&s).to_string());
    for s in &r.strategies {
        let k = r.trace.peak.len() as i64;
        let before = at(&s.samples, p.peak_at - 1.0);
        let planned = before.map_or("--".into(), |b| {
            (b.peak_planned + (k - b.peak_rows) * s.strategy.start_items as i64).to_string()
        });
        let peak: Vec<String> = [5.0, 15.0, 29.0]
            .iter()
            .map(|d| show(at(&s.samples, p.peak_at + d), |s| s.peak_ready))
            .collect();
        let launch: Vec<String> = [-1.0, 2.0, 10.0]
            .iter()
            .map(|d| show(at(&s.samples, p.launch_at + d), |s| s.launch_ready))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {planned} / {} | {} | {} | {} | {} | {} |",
            s.strategy.name,
            show(before, |s| s.peak_ready),
            peak.join(" / "),
            launch.join(" / "),
            show(at(&s.samples, p.burst_at - 1.0), |s| s.burst_ready),
            crate::services::misses_cell(&s.misses),
            s.refill_lag
                .map_or("--".into(), |(n, ms)| format!("{n:.0}, {ms:.0} ms")),
        );
    }
    md
}

/// The markdown section.
pub fn report(r: &CatalogueRun) -> String {
    let (p, t) = (&r.params, &r.trace);
    let w = windows(p, t);
    let one = t.objects_at_one_item();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "{} templates of 1 to {} images (seeded, independent of popularity; {one} objects at one item \
         per template), plus a launch template of {} images created just before the run. One trace, \
         generated once from seed {} and played to every strategy ({} designs): a background of \
         {} designs/s (Poisson) for {} s, templates drawn Zipf(s = {}) ranked by a seeded shuffle; a \
         **daily peak**: {} templates of popularity ranks {} to {} get {} designs/s more between them \
         from P = {} s for {} s; a **scheduled launch**: the new template gets {} designs/s from L = {} s \
         for {} s; an **unannounced burst**: {} designs at once at U = {} s on the least popular \
         template; then the background alone for {} s more (the **tail**: the day going on, played \
         to every strategy but not part of the trace the warm shares and the oracle see). Before each strategy's worker starts, its database gets the history as backdated \
         designs: the peak subset's daily peak on each of the {} days before, at the same rate for 45 min \
         from 15 min before the live peak's time of day (a real daily peak, of which the run plays the \
         start; it covers the 15-minute slot the live peak starts in, wherever in it the run starts), \
         and the background at {}x its rate for the last {} h ({} rows); the templates were created \
         15 days ago.\n",
        p.templates,
        p.max_images,
        t.images[t.launch],
        p.seed,
        t.events.len(),
        p.rate,
        p.secs,
        p.zipf_s,
        t.peak.len(),
        p.peak_first_rank + 1,
        p.peak_first_rank + t.peak.len(),
        p.peak_rate,
        p.peak_at,
        p.peak_secs,
        p.launch_rate,
        p.launch_at,
        p.launch_secs,
        p.burst,
        p.burst_at,
        p.tail_secs,
        p.history_days,
        p.history_share,
        p.history_hours,
        r.strategies.first().map_or(0, |s| s.history_rows),
    );
    let _ = writeln!(
        md,
        "Each strategy runs on a fresh database, bucket and Redis prefix seeded with its idle steady \
         state (every template's pool at its target: 1 item with fixed N=1 and adaptive sizing, where \
         `pool.min` = 1; 4 with fixed N=4 -- {} objects, twice the budget; items ready 2 h ago, their \
         objects in S3), with its own API and worker (garbage collection: one pass of one page, at start); the worker copies through the proxy ({} ms \
         injected; median CopyObject measured at the proxy: {:.0} ms), {} copies in flight. Adaptive: \
         min 1, max 32, **budget B = {} objects** (twice the catalogue at one item per template), demand \
         time constants 3 s and {} s, plan every 1 s, `pool.keep_secs` {} (the defaults' slow time constant and hold, 1,800 s and a day, scaled by 120/1,800 as the scenario plays a day in minutes), `pool.miss_target` {}, `pool.forecast` off; adaptive + forecast + \
         schedules: the same with `pool.forecast` on, and a one-off window on the launch template from \
         L for {} s with target {}, set before the run with `PUT /admin/templates/{{id}}/pool-policy`.\n",
        4 * one,
        r.delay.as_millis(),
        r.copy_us as f64 / 1e3,
        r.slots,
        r.budget,
        super::DEMAND_SLOW_SECS,
        super::keep_secs(),
        super::miss_target(),
        p.launch_window_secs,
        p.launch_target,
    );
    let _ = writeln!(
        md,
        "| strategy | warm, all designs | all but the unannounced burst | peak: first {0:.0} s (peak subset) | launch: first {0:.0} s | burst | tail | pooled objects: start / mean / peak | wasted copies, at most: retired + discarded before ready + held above need = share of copies | made during the run, still pooled | S3 copies per design |",
        p.first_secs
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &r.strategies {
        md.push_str(&strategy_row(r, s, &w));
    }
    md.push_str(&oracle_rows(r, &w));
    let _ = writeln!(
        md,
        "\nWarm shares are of the designs served (errors left out); the tail's are shown apart. \
         Pooled objects: objects of the `copying` and `ready` items, sampled every second of the \
         trace. Copies are counted from the trace's start to {} s after the tail's last design \
         (objects): wasted, at most, are items that became ready and were discarded (retired or \
         discarded unused), + items reserved and discarded before they were ready (landed above a \
         lowered hold level, failed, superseded; also reserved items handed back before any copy, \
         which cost none), + the surplus still held at the end: per template, live items above \
         both its starting stock and its planned fill level then (stock up to the start replaced \
         used items; stock up to the fill level is what demand as it stands keeps pooled anyway), \
         which later designs may still use -- it counts here in full. The share is of all copies \
         (items made and the cold designs' copies, the tail's included). Made during the run, \
         still pooled: objects of items reserved since the start and unused at the end (mostly \
         replacements of used items, not waste). S3 copies per design: the objects of the items \
         made plus the cold designs' copies, per design of the trace and the tail.\n",
        super::SETTLE.as_secs()
    );
    let _ = writeln!(
        md,
        "The **offline optimum** knows the trace and each template's images, starts from the \
         adaptive strategies' state (one ready item per template at t = 0, which it must use or \
         hold), has the same budget B (pooled objects: ready items' plus the copies done for items \
         not yet ready) and the worker's copy capacity ({} copies in flight, each taking the measured \
         median {:.0} ms; an item of o images needs o copies); a design is warm if an item of its \
         template is ready when it arrives. The optimum lies between two bounds \
         (`crates/bench/src/oracle.rs` has the proofs): a **feasible schedule** (each template's \
         initial item serves its first design; the others, latest first, have their copies placed as \
         late as possible on the copy slots, and are misses when a copy would start before 0 or the \
         budget would be exceeded), and a **relaxation**: the smaller of the copy capacity without the \
         budget (Moore-Hodgson against `slots x floor(t / copy time)` copies by time t, exact for that \
         relaxation) and the budget without the copy capacity (designs arriving at one instant fit in \
         B together). Per window, the lower bound is what the whole-trace schedule serves there; the \
         upper bound is the relaxation restricted to the window. The oracle pays no messaging, \
         planning or refill latency: it is the limit, not a strategy.\n",
        r.slots,
        r.copy_us as f64 / 1e3,
    );
    md.push_str("What the ledger showed around the events (sampled every second):\n\n");
    md.push_str(&ledger_rows(r));
    let runs: Vec<String> = r
        .strategies
        .iter()
        .map(|s| {
            format!(
                "{} {:.0} s (seeding {:.0} s; started {:.1} s after the history's anchor)",
                s.strategy.name, s.wall_secs, s.seed_secs, s.start_skew_secs
            )
        })
        .collect();
    let _ = writeln!(
        md,
        "\nThis section took {:.0} s: {}.\n",
        r.wall_secs,
        runs.join("; ")
    );
    let _ = writeln!(
        md,
        "Reproduce: `make bench-build && scripts/stack.sh bench && target/release/prewarm-bench{} \
         --only catalogue --out <file>` (part of `make bench{}` too). \
         `PREWARM_BENCH_CATALOGUE_STRATEGIES=fixed1,fixed4,adaptive,forecast` picks strategies.",
        if p.templates < 10_000 { " --quick" } else { "" },
        if p.templates < 10_000 { "-quick" } else { "" },
    );
    md
}
