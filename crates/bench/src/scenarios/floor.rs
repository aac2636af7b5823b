//! The physical floor of the warm path: the least durable work a design
//! needs -- one Redis `LPOP` and one Postgres round trip that commits the
//! rows the data model writes for a warm design (the item flipped to
//! `used`, the company's counter, one design row that references the item;
//! one statement, a function the floor creates, called as a cached prepared
//! statement as the warm path calls its claim) -- issued straight through
//! the drivers: no HTTP, no auth, no framework, no template check. The warm
//! path's latency and throughput are reported as ratios to this, measured
//! in the same run. With `images` > 0 it is the old model's floor instead:
//! a transaction writing a design row and that many image rows (reported
//! beside it).

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use anyhow::Context;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use prewarm_store::db::schema::{design_images, designs};
use prewarm_store::db::Db;
use prewarm_store::pool_index::PoolIndex;
use shared_domain::ids::{CompanyId, DesignId, PoolItemId, TemplateId};

use super::CpuRows;
use crate::load::{closed_loop, Outcome, RunResult};
use crate::services::{cpu_by_command, cpu_per_request};
use crate::setup::{Bench, IMAGES, LEAD_IN, SERVICE_DB_CONNECTIONS};

mod floor_sql {
    use diesel::sql_types::{Timestamptz, Uuid};

    diesel::define_sql_function! {
        /// The warm model's writes in one statement (see [`super::FLOOR_FUNCTION`]).
        fn prewarm_bench_floor(item: Uuid, company: Uuid, design: Uuid, template: Uuid, at: Timestamptz) -> Bool;
    }
}

/// The floor's statement: what the warm claim writes, without the template
/// check, all or nothing.
const FLOOR_FUNCTION: &str = "
CREATE OR REPLACE FUNCTION prewarm_bench_floor(
    p_item uuid, p_company uuid, p_design uuid, p_template uuid, p_now timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pool_items SET state = 'used', finished_at = p_now
     WHERE id = p_item AND state = 'ready';
    IF NOT FOUND THEN RAISE EXCEPTION 'floor: item gone'; END IF;
    UPDATE companies SET design_count = design_count + 1
     WHERE id = p_company AND design_count < design_limit;
    IF NOT FOUND THEN RAISE EXCEPTION 'floor: limit'; END IF;
    INSERT INTO designs (id, company_id, template_id, template_version, layout, served_from,
                         pool_item_id, created_at)
    VALUES (p_design, p_company, p_template, 1, '{}', 'pool', p_item, p_now);
    RETURN true;
END
$$";

#[derive(Clone)]
pub struct Floor {
    pub db: Db,
    pub index: PoolIndex,
    /// Designs go to these companies in turn, as the warm path's load does
    /// (one company's designs serialize on its plan-limit row).
    pub companies: Arc<Vec<CompanyId>>,
    pub next: Arc<AtomicUsize>,
    pub template: TemplateId,
    pub images: usize,
    /// The Redis list popped from (a template id no pool uses).
    pub list: TemplateId,
}

impl Floor {
    /// Fills the floor's Redis list with `n` ids to pop, each a `ready`
    /// pool item row of the template at version 0 (no request pops those).
    pub async fn prepare(&self, n: usize) -> anyhow::Result<()> {
        let ids: Vec<PoolItemId> = (0..n).map(|_| PoolItemId::new()).collect();
        let mut conn = self.db.conn().await?;
        diesel::sql_query(FLOOR_FUNCTION).execute(&mut conn).await?;
        for chunk in ids.chunks(5000) {
            let raw: Vec<uuid::Uuid> = chunk.iter().map(|i| i.0).collect();
            diesel::sql_query(
                "INSERT INTO pool_items (id, template_id, template_version, state, created_at, ready_at, image_count)
                 SELECT i, $2, 0, 'ready', now(), now(), 0 FROM unnest($1::uuid[]) AS i",
            )
            .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&raw)
            .bind::<diesel::sql_types::Uuid, _>(self.template.0)
            .execute(&mut conn)
            .await?;
            // Listed in small batches: a push checks each id against the
            // list (LPOS), so one script over 5,000 ids into a list of
            // 10,000 ran past the command timeout on a loaded machine.
            for ids in chunk.chunks(250) {
                self.index
                    .push(PoolKey::new(self.list, TemplateVersion::FIRST), ids)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn one(&self) -> Outcome {
        match self.run().await {
            Ok(()) => Outcome {
                ok: true,
                warm: true,
            },
            Err(e) => {
                eprintln!("floor op failed: {e}");
                Outcome {
                    ok: false,
                    warm: false,
                }
            }
        }
    }

    async fn run(&self) -> anyhow::Result<()> {
        let item = self
            .index
            .pop(PoolKey::new(self.list, TemplateVersion::FIRST))
            .await?
            .context("the floor's list ran out")?;
        let id = DesignId::new();
        let now = prewarm_store::db::now();
        let rows: Vec<_> = (0..self.images as i32)
            .map(|p| {
                (
                    design_images::design_id.eq(id.0),
                    design_images::position.eq(p),
                    design_images::object_key.eq(format!("floor/{id}/{p:04}")),
                )
            })
            .collect();
        let warm_model = self.images == 0;
        let company = self.companies[self.next.fetch_add(1, Relaxed) % self.companies.len()];
        let mut conn = self.db.conn().await?;
        if warm_model {
            diesel::select(floor_sql::prewarm_bench_floor(
                item.0,
                company.0,
                id.0,
                self.template.0,
                now,
            ))
            .get_result::<bool>(&mut conn)
            .await?;
            return Ok(());
        }
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::insert_into(designs::table)
                .values((
                    designs::id.eq(id.0),
                    designs::company_id.eq(company.0),
                    designs::template_id.eq(self.template.0),
                    designs::template_version.eq(1),
                    designs::layout.eq(serde_json::json!({})),
                    designs::served_from.eq("pool"),
                    designs::pool_item_id.eq(None::<uuid::Uuid>),
                    designs::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
            diesel::insert_into(design_images::table)
                .values(&rows)
                .execute(conn)
                .await?;
            Ok(())
        })
        .await?;
        Ok(())
    }
}

/// The floor's runs: the warm model's at 8 clients and the old model's at
/// 1 and 64, and the warm model's floor on pools of its own for the 1- and
/// 64-client runs, which `scenarios::warm` runs in rounds with the warm
/// path's.
pub struct FloorRuns {
    pub runs: Vec<(usize, RunResult)>,
    /// The warm model's floor at 64 clients on the direct pool (66
    /// connections), run alone as before the rounds: what the rounds'
    /// smaller pool changes.
    pub alone: RunResult,
    pub old: Vec<(usize, RunResult)>,
    pub one_client: Floor,
    /// On a pool of [`SERVICE_DB_CONNECTIONS`], as the API's at 64 clients.
    pub many_clients: Floor,
}

/// Scenario 2: The physical floor (Redis pop + the warm model's transaction,
/// no HTTP) at 8 clients and, for reference, at 64 on 66 connections, and the old model's floor (a design and its 30
/// image rows) at 1 and 64 clients beside it. The warm model's floor at 1
/// and 64 clients runs later, in rounds with the warm path's
/// (`scenarios::warm`), from the [`Floor`]s this returns.
pub async fn floor(
    b: &mut Bench,
    template_a: TemplateId,
    cpu_rows: &mut CpuRows,
) -> anyhow::Result<FloorRuns> {
    let index = b.index.clone();
    let sizes_floor = b.sizes.floor;
    let old_sizes = [(1, sizes_floor[0].1), (64, sizes_floor[2].1 / 2)];
    let alone = (sizes_floor[2].0, sizes_floor[2].1 / 2);
    let floor = Floor {
        db: b.dbh.clone().context("the floor runs once")?,
        index: index.clone(),
        companies: Arc::new(b.tenant_companies.clone()),
        next: Arc::default(),
        template: template_a,
        images: 0,
        list: TemplateId::new(),
    };
    floor
        .prepare(
            sizes_floor
                .iter()
                .chain(old_sizes.iter())
                .chain([&alone])
                .map(|(_, n)| n)
                .sum::<usize>()
                // The lead-ins of the 1- and 64-client rounds (`scenarios::warm`)
                // and of the run alone.
                + LEAD_IN * (1 + 2 * sizes_floor[2].0),
        )
        .await?;
    let mut runs = (Vec::new(), Vec::new());
    let warm_model = [sizes_floor[1], alone];
    for (images, sizes) in [(0, &warm_model[..]), (IMAGES, &old_sizes[..])] {
        let model = Floor {
            images,
            ..floor.clone()
        };
        for &(clients, n) in sizes {
            if images == 0 && clients == alone.0 {
                // Unmeasured: the pool's other connections open first.
                let f = model.clone();
                closed_loop(clients, LEAD_IN * clients, move || {
                    let f = f.clone();
                    async move { f.one().await }
                })
                .await;
            }
            let f = model.clone();
            let before = cpu_by_command();
            let r = closed_loop(clients, n, move || {
                let f = f.clone();
                async move { f.one().await }
            })
            .await;
            let label = if images == 0 && clients == alone.0 {
                format!("floor, {clients} clients on 66 connections, run alone")
            } else if images == 0 {
                format!("floor, {clients} clients")
            } else {
                format!("old floor ({images} image rows), {clients} clients")
            };
            cpu_rows.push((
                label.clone(),
                cpu_per_request(&before, &cpu_by_command(), r.count()),
            ));
            eprintln!("{label}: p50 {:.2} ms, {:.0}/s", r.ms(0.5), r.throughput());
            if images == 0 {
                runs.0.push((clients, r));
            } else {
                runs.1.push((clients, r));
            }
        }
    }

    // The floor's 66 connections go back, so the API processes below fit in
    // Postgres' default 100; the 1- and 64-client floors keep pools of their own.
    let pool = |size| Db::connect(&b.db_url, size, std::time::Duration::from_secs(5));
    let one_client = Floor {
        db: pool(2)?,
        ..floor.clone()
    };
    let many_clients = Floor {
        db: pool(SERVICE_DB_CONNECTIONS)?,
        ..floor.clone()
    };
    drop(floor);
    drop(b.dbh.take());

    let alone = runs.0.pop().context("the run alone")?.1;
    Ok(FloorRuns {
        alone,
        runs: runs.0,
        old: runs.1,
        one_client,
        many_clients,
    })
}
