//! A property test of the pool ledger as a state machine, against the real
//! stack: random sequences of steps, each one to three operations running at
//! the same time -- pops, refills (some duplicated and racing), crashed
//! refills (reserved, never copied), surplus retires (a replica with a lower
//! target), Redis flushes, template edits, lease expiry and reconciler/GC
//! ticks. After every step the invariants hold:
//! the pool never exceeds its target (ledger and Redis), no Redis id is listed
//! twice, every design is of the template's version at its creation and owns
//! its objects alone, and after a GC tick nothing under the template's pool
//! prefix is unreferenced.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::collections::HashSet;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use prewarm_store::db::{designs, pool_items};
use prewarm_tests::{Options, Tenant, TestStack};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use shared_domain::design::Design;
use shared_domain::object_keys::POOL_PREFIX;
use shared_domain::template::Template;
use warmup_worker::reconciler::Reconciler;

const TARGET: i64 = 4;

#[derive(Debug, Clone, Copy)]
enum Op {
    Pop,
    Refill,
    DuplicateRefill,
    CrashedRefill,
    Flush,
    Edit,
    ExpireLeases,
    Tick,
    Shrink,
}

/// What an operation changed in the model.
enum Effect {
    None,
    Design(Design),
    Edited(Template),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Pop),
        3 => Just(Op::Refill),
        2 => Just(Op::DuplicateRefill),
        1 => Just(Op::CrashedRefill),
        1 => Just(Op::Flush),
        1 => Just(Op::Edit),
        1 => Just(Op::ExpireLeases),
        2 => Just(Op::Tick),
        1 => Just(Op::Shrink),
    ]
}

/// A step: one operation, or up to three running at the same time.
fn step() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..=3)
}

struct Model<'a> {
    stack: &'a TestStack,
    tenant: &'a Tenant,
    reconciler: &'a Reconciler,
    /// A refiller whose target is 1 (surplus retire).
    shrinker: &'a warmup_worker::refill::Refiller,
    template: Template,
    designs: Vec<Design>,
}

fn check(cond: bool, msg: impl Into<String>) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(msg.into()))
    }
}

impl Model<'_> {
    /// Runs one step: its operations at the same time (one alone is a
    /// sequential step), then checks the invariants once all are done.
    async fn step(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        let version_before = self.template.version;
        let effects =
            futures::future::join_all(ops.iter().map(|op| self.run(*op, version_before))).await;
        for effect in effects {
            match effect? {
                Effect::None => {}
                Effect::Design(design) => self.designs.push(design),
                Effect::Edited(template) => {
                    if template.version > self.template.version {
                        self.template = template;
                    }
                }
            }
        }
        // No design may be of a version newer than the template's now.
        for design in &self.designs {
            check(
                design.template_version <= self.template.version,
                format!(
                    "design of v{} > template v{}",
                    design.template_version, self.template.version
                ),
            )?;
        }
        if ops.iter().any(|op| matches!(op, Op::Tick)) {
            self.check_no_garbage().await?;
        }
        self.check_invariants().await
    }

    async fn run(&self, op: Op, version_before: TemplateVersion) -> Result<Effect, TestCaseError> {
        let t = self.template.id;
        let refiller = &self.reconciler.refiller;
        match op {
            Op::Pop => {
                let resp = self.stack.post_design(self.tenant, t).await;
                check(
                    resp.status().as_u16() == 201,
                    format!("pop answered {}", resp.status()),
                )?;
                let design: Design = resp
                    .json()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                // Never older than the version when the step began (an edit
                // in the same step may make it newer).
                check(
                    design.template_version >= version_before,
                    format!(
                        "design of v{} while the template was at v{version_before}",
                        design.template_version
                    ),
                )?;
                return Ok(Effect::Design(design));
            }
            Op::Refill => {
                refiller
                    .refill(t)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::DuplicateRefill => {
                let (a, b) = tokio::join!(refiller.refill(t), refiller.refill(t));
                a.and(b).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::CrashedRefill => {
                // Reserved, then the worker died before copying anything.
                let mut conn = refiller
                    .db
                    .conn()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                pool_items::reserve(
                    &mut conn,
                    t,
                    shared_domain::pool::PoolLevels::at(TARGET as i32),
                    Duration::from_secs(300),
                    None,
                )
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::Flush => {
                self.stack
                    .index
                    .clear_prefix()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::Edit => {
                let resp = self
                    .stack
                    .http
                    .patch(self.stack.url(&format!("/templates/{t}")))
                    .bearer_auth(&self.tenant.key)
                    .json(&serde_json::json!({"layout": {"edit": uuid::Uuid::new_v4()}}))
                    .send()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                check(resp.status().as_u16() == 200, "edit refused")?;
                let template: Template = resp
                    .json()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                return Ok(Effect::Edited(template));
            }
            Op::Shrink => {
                // A replica with a lowered target retires surplus items.
                self.shrinker
                    .refill(t)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::ExpireLeases => {
                let mut conn = refiller
                    .db
                    .conn()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                diesel::sql_query(
                    "UPDATE pool_items SET lease_until = now() - interval '1 second' \
                     WHERE template_id = $1 AND state = 'copying'",
                )
                .bind::<diesel::sql_types::Uuid, _>(t.0)
                .execute(&mut conn)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::Tick => {
                self.reconciler
                    .tick()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.reconciler
                    .gc()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        Ok(Effect::None)
    }

    async fn check_invariants(&self) -> Result<(), TestCaseError> {
        let t = self.template.id;
        let v = self.template.version;
        let fail = |e: String| TestCaseError::fail(e);
        let mut conn = self
            .reconciler
            .refiller
            .db
            .conn()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (ready, copying) = pool_items::counts(&mut conn, PoolKey::new(t, v))
            .await
            .map_err(|e| fail(e.to_string()))?;
        check(
            ready + copying <= TARGET,
            format!("ledger above target: {ready} ready + {copying} copying"),
        )?;
        let listed = self
            .stack
            .index
            .list(PoolKey::new(t, v))
            .await
            .map_err(|e| fail(e.to_string()))?;
        check(
            listed.len() as i64 <= TARGET,
            format!("Redis list above target: {}", listed.len()),
        )?;
        let distinct: HashSet<_> = listed.iter().collect();
        check(distinct.len() == listed.len(), "an id listed twice")?;
        let keys = designs::all_object_keys(&mut conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let unique: HashSet<_> = keys.iter().collect();
        check(unique.len() == keys.len(), "an object in two designs")?;
        // Every design still has every object, and its item stayed `used`.
        prewarm_tests::invariants::check_designs(self.stack, self.tenant.id, &self.designs).await;
        let items: Vec<_> = self.designs.iter().filter_map(|d| d.pool_item_id).collect();
        let unique_items: HashSet<_> = items.iter().collect();
        check(unique_items.len() == items.len(), "a pool item used twice")?;
        Ok(())
    }

    async fn check_no_garbage(&self) -> Result<(), TestCaseError> {
        let fail = |e: String| TestCaseError::fail(e);
        let mut conn = self
            .reconciler
            .refiller
            .db
            .conn()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut referenced: HashSet<String> = designs::all_object_keys(&mut conn)
            .await
            .map_err(|e| fail(e.to_string()))?
            .into_iter()
            .collect();
        referenced.extend(
            pool_items::live_object_keys(&mut conn)
                .await
                .map_err(|e| fail(e.to_string()))?,
        );
        let stored = self
            .stack
            .objects
            .list(&format!("{POOL_PREFIX}{}/", self.template.id))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let garbage: Vec<_> = stored.iter().filter(|k| !referenced.contains(*k)).collect();
        check(
            garbage.is_empty(),
            format!("{} unreferenced objects after a GC tick", garbage.len()),
        )
    }
}

#[test]
fn the_ledger_keeps_its_invariants_under_random_operations() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stack = rt.block_on(TestStack::spawn(Options::without_worker()));
    let tenant = rt.block_on(stack.create_tenant("model", 100_000));
    let reconciler = rt.block_on(stack.reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")]));
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let shrinker = rt
        .block_on(stack.reconciler(&[("PREWARM_POOL__TARGET", "1")]))
        .refiller;
    let result = runner.run(&proptest::collection::vec(step(), 1..10), |steps| {
        rt.block_on(async {
            let template = stack.create_template(&tenant, 2, "private").await;
            let mut model = Model {
                stack: &stack,
                tenant: &tenant,
                reconciler: &reconciler,
                shrinker: &shrinker,
                template,
                designs: Vec::new(),
            };
            for ops in steps {
                model.step(&ops).await?;
            }
            // Whatever happened, one reconciler pass brings the pool back to target.
            model.step(&[Op::ExpireLeases]).await?;
            model.step(&[Op::Tick]).await?;
            // No worker refills behind the model, so only `indexed` may still
            // move: an id the API popped ahead is listed again within
            // `serving.prefetch_hold_ms` (500 ms) plus a sweep.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            loop {
                let status = stack.pool_status(&tenant, model.template.id).await;
                let healed = (status.ready, status.copying, status.indexed) == (TARGET, 0, TARGET);
                if healed || std::time::Instant::now() >= deadline {
                    break check(healed, format!("not healed after a tick: {status:?}"));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    });
    rt.block_on(stack.finish());
    if let Err(e) = result {
        panic!("{e}");
    }
}
