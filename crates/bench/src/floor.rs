//! The physical floor of the warm path: the least durable work a design
//! needs -- one Redis `LPOP` and one Postgres transaction writing the rows the
//! data model writes for a warm design (the item flipped to `used`, the
//! company's counter, one design row that references the item) -- issued
//! straight through the drivers: no HTTP, no auth, no framework. The warm
//! path's latency and throughput are reported as ratios to this, measured
//! in the same run. With `images` > 0 it is the old model's floor instead:
//! a design row and that many image rows (reported beside it).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use anyhow::Context;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use prewarm_store::db::schema::{companies, design_images, designs, pool_items};
use prewarm_store::db::Db;
use prewarm_store::pool_index::PoolIndex;
use shared_domain::ids::{CompanyId, DesignId, PoolItemId, TemplateId};

use crate::load::Outcome;

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
        for chunk in ids.chunks(5000) {
            let raw: Vec<uuid::Uuid> = chunk.iter().map(|i| i.0).collect();
            diesel::sql_query(
                "INSERT INTO pool_items (id, template_id, template_version, state, created_at, ready_at)
                 SELECT i, $2, 0, 'ready', now(), now() FROM unnest($1::uuid[]) AS i",
            )
            .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&raw)
            .bind::<diesel::sql_types::Uuid, _>(self.template.0)
            .execute(&mut conn)
            .await?;
            self.index.push(self.list, 1, chunk).await?;
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
            .pop(self.list, 1)
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
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            if warm_model {
                diesel::update(
                    pool_items::table
                        .find(item.0)
                        .filter(pool_items::state.eq("ready")),
                )
                .set((
                    pool_items::state.eq("used"),
                    pool_items::finished_at.eq(now),
                ))
                .execute(conn)
                .await?;
                diesel::update(
                    companies::table
                        .find(company.0)
                        .filter(companies::design_count.lt(companies::design_limit)),
                )
                .set(companies::design_count.eq(companies::design_count + 1))
                .execute(conn)
                .await?;
            }
            diesel::insert_into(designs::table)
                .values((
                    designs::id.eq(id.0),
                    designs::company_id.eq(company.0),
                    designs::template_id.eq(self.template.0),
                    designs::template_version.eq(1),
                    designs::layout.eq(serde_json::json!({})),
                    designs::served_from.eq("pool"),
                    designs::pool_item_id.eq(warm_model.then_some(item.0)),
                    designs::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
            if !rows.is_empty() {
                diesel::insert_into(design_images::table)
                    .values(&rows)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }
}
