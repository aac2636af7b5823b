//! Scenario 3: the warm path over HTTP: closed loops of 1, 8 and 64
//! clients, 64 clients of one company, and an open loop.

use std::time::Duration;

use shared_domain::ids::TemplateId;

use super::floor::Floor;
use super::CpuRows;
use crate::load::{closed_loop, open_loop, RunResult};
use crate::services::{cpu_by_command, cpu_per_request};
use crate::setup::{set, start_api, Api, Bench, LEAD_IN};

pub struct Warm {
    pub runs: Vec<(usize, RunResult)>,
    /// The floor at 1 client, run in rounds with the warm path's 1-client
    /// run (`runs[0]`).
    pub floor_one: RunResult,
    /// The floor at 64 clients, run in rounds with the warm path's
    /// 64-client run (`runs[2]`).
    pub floor_many: RunResult,
    /// 1 client through an API holding one id ahead at a time
    /// (`serving.prefetch_batch` = 1), in the same rounds.
    pub one_id: RunResult,
    /// 1 client through an API that pops on the request path
    /// (`serving.prefetch_hold_ms` = 0).
    pub no_prefetch: RunResult,
    /// 64 clients of one company.
    pub single: RunResult,
    /// `GET /healthz` through the same client at 1 and 64 clients: what
    /// HTTP alone costs on this machine.
    pub http: Vec<(usize, RunResult)>,
    pub open: RunResult,
}

/// Scenario 3: The warm path over HTTP: closed loops, one company, open loop.
pub async fn warm(
    b: &Bench,
    template_a: TemplateId,
    floor_one: &Floor,
    floor_many: &Floor,
    cpu_rows: &mut CpuRows,
) -> anyhow::Result<Warm> {
    let (sizes, client) = (&b.sizes, &b.client);
    b.warm_keys(&b.base).await?;
    let [floor_one, warm_one, one_id] = one_client(b, template_a, floor_one, cpu_rows).await?;
    let mut warm_runs = vec![(1, warm_one)];
    for (clients, n) in sizes.warm.into_iter().skip(1).take(1) {
        let pick = b.many();
        let before = cpu_by_command();
        let r = closed_loop(clients, n, move || {
            let c = pick();
            async move { c.post_design(template_a).await }
        })
        .await;
        cpu_rows.push((
            format!("warm, {clients} clients"),
            cpu_per_request(&before, &cpu_by_command(), r.count()),
        ));
        eprintln!(
            "warm {clients}: p50 {:.2} ms, {:.0}/s, warm {:.1}%",
            r.ms(0.5),
            r.throughput(),
            r.warm_share() * 100.0
        );
        warm_runs.push((clients, r));
    }
    let [floor_many, warm_many] = many_clients(b, template_a, floor_many, cpu_rows).await?;
    warm_runs.push((sizes.warm[2].0, warm_many));
    let no_prefetch = without_prefetch(b, template_a).await?;
    // The same at 64 clients from one company: its plan-limit row serializes them.
    let c = client.clone();
    let single = closed_loop(64, sizes.warm[1].1, move || {
        let c = c.clone();
        async move { c.post_design(template_a).await }
    })
    .await;
    eprintln!(
        "warm 64, one company: p50 {:.2} ms, {:.0}/s",
        single.ms(0.5),
        single.throughput()
    );
    let mut http = Vec::new();
    for (clients, n) in [sizes.warm[0], sizes.warm[2]] {
        let c = client.clone();
        let r = closed_loop(clients, n, move || {
            let c = c.clone();
            async move { crate::client::get_healthz(&c.http, &c.base).await }
        })
        .await;
        eprintln!(
            "http alone {clients}: p50 {:.2} ms, {:.0}/s",
            r.ms(0.5),
            r.throughput()
        );
        http.push((clients, r));
    }
    let pick = b.many();
    let open = open_loop(
        sizes.open_rate,
        Duration::from_secs_f64(sizes.open_secs),
        move || {
            let c = pick();
            async move { c.post_design(template_a).await }
        },
    )
    .await;
    eprintln!(
        "warm open-loop {}/s: p99 {:.2} ms",
        sizes.open_rate,
        open.ms(0.99)
    );

    Ok(Warm {
        runs: warm_runs,
        floor_one,
        floor_many,
        one_id,
        no_prefetch,
        single,
        http,
        open,
    })
}

/// One side of a comparison made in rounds ([`in_rounds`]).
#[derive(Clone)]
enum Arm {
    /// The floor, straight through the drivers.
    Floor(Floor),
    /// The warm path over HTTP, through the API at `base` (the bench's own
    /// when `None`).
    Warm(Option<String>),
}

/// Rounds of a comparison ([`in_rounds`]).
const ROUNDS: usize = 4;

/// Runs `arms` in [`ROUNDS`] rounds of one chunk each (`requests` over the
/// rounds), at `clients` clients, the first arm of a round rotating: the
/// floor and the warm path are compared at a 1.2x and a 80% margin, and run
/// minutes apart they read 1-client ratios from 1.22x to 1.48x, and
/// 64-client floors from 5,584/s to 8,707/s, on the same build, as the
/// machine's speed and the database drifted in between. Each arm's run and
/// CPU per request, summed over its chunks.
async fn in_rounds(
    b: &Bench,
    template: TemplateId,
    clients: usize,
    arms: &[(Arm, usize)],
) -> Vec<(RunResult, CpuSum)> {
    let mut out: Vec<(RunResult, CpuSum)> = arms
        .iter()
        .map(|_| (RunResult::empty(), CpuSum::default()))
        .collect();
    // Unmeasured: every arm's connections open before the first chunk.
    for (arm, _) in arms {
        run(b, template, clients, arm, LEAD_IN * clients).await;
    }
    for round in 0..ROUNDS {
        for k in 0..arms.len() {
            let i = (round + k) % arms.len();
            let (arm, requests) = &arms[i];
            let before = cpu_by_command();
            let r = run(b, template, clients, arm, requests / ROUNDS).await;
            out[i].1.add(
                &cpu_per_request(&before, &cpu_by_command(), r.count()),
                r.count(),
            );
            out[i].0.append(&r);
        }
    }
    out
}

/// One closed-loop chunk of `requests` of an arm at `clients` clients.
async fn run(
    b: &Bench,
    template: TemplateId,
    clients: usize,
    arm: &Arm,
    requests: usize,
) -> RunResult {
    match arm {
        Arm::Floor(floor) => {
            let f = floor.clone();
            closed_loop(clients, requests, move || {
                let f = f.clone();
                async move { f.one().await }
            })
            .await
        }
        Arm::Warm(base) => {
            let (pick, base) = (b.many(), base.clone());
            closed_loop(clients, requests, move || {
                let mut c = pick();
                if let Some(base) = &base {
                    c.base = base.clone();
                }
                async move { c.post_design(template).await }
            })
            .await
        }
    }
}

/// The 1-client comparison in rounds: the floor, the warm path, and the
/// warm path through an API holding one id ahead at a time
/// (`serving.prefetch_batch` = 1). Their runs, in that order.
async fn one_client(
    b: &Bench,
    template: TemplateId,
    floor: &Floor,
    cpu_rows: &mut CpuRows,
) -> anyhow::Result<[RunResult; 3]> {
    let mut env = b.env.clone();
    set(&mut env, "PREWARM_SERVING__PREFETCH_BATCH", 1);
    let log = b.run_dir.join("bench-api-one-id.log");
    let (one_id_api, one_id_base) = start_api(&b.root, &env, "template-api", &log).await?;
    b.warm_keys(&one_id_base).await?;
    let (floor_n, warm_n) = (b.sizes.floor[0].1, b.sizes.warm[0].1);
    let arms = [
        (Arm::Floor(floor.clone()), floor_n),
        (Arm::Warm(None), warm_n),
        (Arm::Warm(Some(one_id_base)), warm_n),
    ];
    let runs = in_rounds(b, template, 1, &arms).await;
    one_id_api.stop().await;
    let [(f, f_cpu), (w, w_cpu), (o, o_cpu)]: [(RunResult, CpuSum); 3] =
        runs.try_into().map_err(|_| anyhow::anyhow!("three arms"))?;
    cpu_rows.insert(0, ("floor, 1 clients".into(), f_cpu.per_request()));
    cpu_rows.push(("warm, 1 clients".into(), w_cpu.per_request()));
    cpu_rows.push((
        "warm, 1 client, one id held at a time".into(),
        o_cpu.per_request(),
    ));
    eprintln!(
        "floor 1 / warm 1 / warm 1 one id at a time, in {ROUNDS} rounds: p50 {:.2} / {:.2} / {:.2} ms ({:.2}x, {:.2}x)",
        f.ms(0.5),
        w.ms(0.5),
        o.ms(0.5),
        w.ms(0.5) / f.ms(0.5).max(1e-9),
        o.ms(0.5) / f.ms(0.5).max(1e-9)
    );
    Ok([f, w, o])
}

/// The 64-client comparison in rounds: the floor (on a pool the size of
/// the API's) and the warm path. Their runs, in that order.
async fn many_clients(
    b: &Bench,
    template: TemplateId,
    floor: &Floor,
    cpu_rows: &mut CpuRows,
) -> anyhow::Result<[RunResult; 2]> {
    let ((clients, floor_n), (_, warm_n)) = (b.sizes.floor[2], b.sizes.warm[2]);
    let arms = [
        (Arm::Floor(floor.clone()), floor_n),
        (Arm::Warm(None), warm_n),
    ];
    let runs = in_rounds(b, template, clients, &arms).await;
    let [(f, f_cpu), (w, w_cpu)]: [(RunResult, CpuSum); 2] =
        runs.try_into().map_err(|_| anyhow::anyhow!("two arms"))?;
    let at = cpu_rows
        .iter()
        .position(|(label, _)| label.starts_with("old floor"))
        .unwrap_or(cpu_rows.len());
    cpu_rows.insert(
        at,
        (format!("floor, {clients} clients"), f_cpu.per_request()),
    );
    cpu_rows.push((format!("warm, {clients} clients"), w_cpu.per_request()));
    eprintln!(
        "floor {clients} / warm {clients}, in {ROUNDS} rounds: {:.0}/s / {:.0}/s ({:.0}%)",
        f.throughput(),
        w.throughput(),
        100.0 * w.throughput() / f.throughput().max(1e-9)
    );
    Ok([f, w])
}

/// CPU milliseconds by process summed over chunks of a run.
#[derive(Default)]
struct CpuSum {
    ms: std::collections::BTreeMap<String, f64>,
    requests: u64,
}

impl CpuSum {
    fn add(&mut self, per_request: &[(String, f64)], requests: u64) {
        for (process, ms) in per_request {
            *self.ms.entry(process.clone()).or_default() += ms * requests as f64;
        }
        self.requests += requests;
    }

    fn per_request(&self) -> Vec<(String, f64)> {
        let mut rows: Vec<(String, f64)> = self
            .ms
            .iter()
            .map(|(p, ms)| (p.clone(), ms / self.requests.max(1) as f64))
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows
    }
}

/// The 1-client run through a second API whose requests pop their own ids
/// (`serving.prefetch_hold_ms` = 0): what prefetching saves.
async fn without_prefetch(b: &Bench, template: TemplateId) -> anyhow::Result<RunResult> {
    // On a settled database, as the 1-client run it is compared with (it
    // follows the 64-client run's writes).
    b.settle().await?;
    let mut env = b.env.clone();
    set(&mut env, "PREWARM_SERVING__PREFETCH_HOLD_MS", 0);
    let log = b.run_dir.join("bench-api-no-prefetch.log");
    let (api, base) = start_api(&b.root, &env, "template-api", &log).await?;
    b.warm_keys(&base).await?;
    let pick = b.many();
    let r = closed_loop(1, b.sizes.warm[0].1, move || {
        let c = Api {
            base: base.clone(),
            ..pick()
        };
        async move { c.post_design(template).await }
    })
    .await;
    api.stop().await;
    eprintln!(
        "warm 1, prefetch off: p50 {:.2} ms, warm {:.1}%",
        r.ms(0.5),
        r.warm_share() * 100.0
    );
    Ok(r)
}
