//! The physical floor of the warm path: one Redis `LPOP` and one Postgres
//! transaction inserting a design and its image rows, issued straight through
//! the drivers -- no HTTP, no auth, no framework. The warm path's latency and
//! throughput are reported as ratios to this, measured in the same run.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use prewarm_store::db::schema::{design_images, designs};
use prewarm_store::db::Db;
use prewarm_store::pool_index::PoolIndex;
use shared_domain::ids::{CompanyId, DesignId, PoolItemId, TemplateId};

use crate::load::Outcome;

#[derive(Clone)]
pub struct Floor {
    pub db: Db,
    pub index: PoolIndex,
    pub company: CompanyId,
    pub template: TemplateId,
    pub images: usize,
    /// The Redis list popped from (a template id no pool uses).
    pub list: TemplateId,
}

impl Floor {
    /// Fills the floor's Redis list with `n` ids to pop.
    pub async fn prepare(&self, n: usize) -> anyhow::Result<()> {
        let ids: Vec<PoolItemId> = (0..n).map(|_| PoolItemId::new()).collect();
        for chunk in ids.chunks(1000) {
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
        self.index.pop(self.list, 1).await?;
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
        let mut conn = self.db.conn().await?;
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::insert_into(designs::table)
                .values((
                    designs::id.eq(id.0),
                    designs::company_id.eq(self.company.0),
                    designs::template_id.eq(self.template.0),
                    designs::template_version.eq(1),
                    designs::layout.eq(serde_json::json!({})),
                    designs::served_from.eq("pool"),
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
