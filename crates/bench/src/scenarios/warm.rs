//! Scenario 3: the warm path over HTTP: closed loops of 1, 8 and 64
//! clients, 64 clients of one company, and an open loop.

use std::time::Duration;

use shared_domain::ids::TemplateId;

use super::floor::Floor;
use super::CpuRows;
use crate::load::{closed_loop, open_loop, RunResult};
use crate::services::{cpu_by_command, cpu_per_request};
use crate::setup::{set, start_api, Api, Bench};

pub struct Warm {
    pub runs: Vec<(usize, RunResult)>,
    /// The floor at 1 client, run in rounds with the warm path's 1-client
    /// run (`runs[0]`).
    pub floor_one: RunResult,
    /// 1 client through an API holding one id ahead at a time
    /// (`pool.prefetch_batch` = 1), in the same rounds.
    pub one_id: RunResult,
    /// 1 client through an API that pops on the request path
    /// (`pool.prefetch_hold_ms` = 0).
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
    floor: &Floor,
    cpu_rows: &mut CpuRows,
) -> anyhow::Result<Warm> {
    let (sizes, client) = (&b.sizes, &b.client);
    b.warm_keys(&b.base).await?;
    let [floor_one, warm_one, one_id] = one_client(b, template_a, floor, cpu_rows).await?;
    let mut warm_runs = vec![(1, warm_one)];
    for (clients, n) in sizes.warm.into_iter().skip(1) {
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
        one_id,
        no_prefetch,
        single,
        http,
        open,
    })
}

/// The 1-client runs compared in rounds ([`one_client`]).
#[derive(Clone, Copy, PartialEq)]
enum Arm {
    Floor,
    Warm,
    /// The warm path through an API that holds one id ahead at a time
    /// (`pool.prefetch_batch` = 1).
    OneId,
}

/// Rounds of the 1-client comparison ([`one_client`]).
const ONE_CLIENT_ROUNDS: usize = 4;

/// Rounds of one 1-client chunk each of the floor, the warm path, and the
/// warm path holding one id ahead at a time, the first of them rotating:
/// the floor and the warm path are compared at a 1.2x margin, and run
/// minutes apart they read ratios from 1.22x to 1.48x on the same build, as
/// the machine's speed and the database drifted in between. Each arm's run
/// and CPU row summed over its chunks: floor, warm, one id at a time.
async fn one_client(
    b: &Bench,
    template: TemplateId,
    floor: &Floor,
    cpu_rows: &mut CpuRows,
) -> anyhow::Result<[RunResult; 3]> {
    let mut env = b.env.clone();
    set(&mut env, "PREWARM_POOL__PREFETCH_BATCH", 1);
    let log = b.run_dir.join("bench-api-one-id.log");
    let (one_id_api, one_id_base) = start_api(&b.root, &env, "template-api", &log).await?;
    b.warm_keys(&one_id_base).await?;
    let arms = [Arm::Floor, Arm::Warm, Arm::OneId];
    let mut runs = [RunResult::empty(), RunResult::empty(), RunResult::empty()];
    let mut cpu: [CpuSum; 3] = Default::default();
    for round in 0..ONE_CLIENT_ROUNDS {
        for k in 0..arms.len() {
            let i = (round + k) % arms.len();
            let before = cpu_by_command();
            let r = match arms[i] {
                Arm::Floor => {
                    let f = floor.clone();
                    closed_loop(1, b.sizes.floor[0].1 / ONE_CLIENT_ROUNDS, move || {
                        let f = f.clone();
                        async move { f.one().await }
                    })
                    .await
                }
                arm => {
                    let pick = b.many();
                    let base = (arm == Arm::OneId).then(|| one_id_base.clone());
                    closed_loop(1, b.sizes.warm[0].1 / ONE_CLIENT_ROUNDS, move || {
                        let mut c = pick();
                        if let Some(base) = &base {
                            c.base = base.clone();
                        }
                        async move { c.post_design(template).await }
                    })
                    .await
                }
            };
            cpu[i].add(
                &cpu_per_request(&before, &cpu_by_command(), r.count()),
                r.count(),
            );
            runs[i].append(&r);
        }
    }
    one_id_api.stop().await;
    cpu_rows.insert(0, ("floor, 1 clients".into(), cpu[0].per_request()));
    cpu_rows.push(("warm, 1 clients".into(), cpu[1].per_request()));
    cpu_rows.push((
        "warm, 1 client, one id held at a time".into(),
        cpu[2].per_request(),
    ));
    let [f, w, o] = &runs;
    eprintln!(
        "floor 1 / warm 1 / warm 1 one id at a time, in {ONE_CLIENT_ROUNDS} rounds: p50 {:.2} / {:.2} / {:.2} ms ({:.2}x, {:.2}x)",
        f.ms(0.5),
        w.ms(0.5),
        o.ms(0.5),
        w.ms(0.5) / f.ms(0.5).max(1e-9),
        o.ms(0.5) / f.ms(0.5).max(1e-9)
    );
    Ok(runs)
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
/// (`pool.prefetch_hold_ms` = 0): what prefetching saves.
async fn without_prefetch(b: &Bench, template: TemplateId) -> anyhow::Result<RunResult> {
    // On a settled database, as the 1-client run it is compared with (it
    // follows the 64-client run's writes).
    b.settle().await?;
    let mut env = b.env.clone();
    set(&mut env, "PREWARM_POOL__PREFETCH_HOLD_MS", 0);
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
