//! The checks every concurrency test ends with: no design ever lost an object.
//!
//! - every design a client got a 201 for still exists, and every object it
//!   lists exists in S3 (one HEAD each);
//! - no object key belongs to two designs;
//! - every design made from a pool item has that item `used` (never
//!   `discarded`: a discarded item's objects are deleted);
//! - no design of a deleted template was created after its deletion;
//! - no Redis pool list holds an id twice, or an id the ledger no longer has
//!   `ready` (checked once the system is quiet).

use std::collections::HashSet;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use prewarm_store::db::designs;
use shared_domain::design::Design;
use shared_domain::ids::{CompanyId, TemplateId};

use crate::TestStack;

/// What [`check_designs`] looked at, for the reports in `docs/reliability.md`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Checked {
    pub designs: usize,
    pub objects: usize,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(stack: &TestStack, sql: &str) -> i64 {
    let mut conn = stack.db.conn().await.expect("db");
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .expect("count query")
        .n
}

/// The design and object checks above; panics with the first violation.
pub async fn check_designs(stack: &TestStack, company: CompanyId, made: &[Design]) -> Checked {
    let mut checked = Checked::default();
    let mut conn = stack.db.conn().await.expect("db");
    let mut seen = HashSet::new();
    for design in made {
        let stored = designs::find(&mut conn, company, design.id)
            .await
            .expect("read design")
            .unwrap_or_else(|| panic!("design {} is gone", design.id));
        assert_eq!(stored.images, design.images, "design {} changed", design.id);
        for image in &design.images {
            assert!(
                seen.insert(image.object_key.clone()),
                "object {} is in two designs",
                image.object_key
            );
            assert!(
                stack
                    .objects
                    .exists(&image.object_key)
                    .await
                    .expect("HEAD object"),
                "design {} lost object {}",
                design.id,
                image.object_key
            );
            checked.objects += 1;
        }
        checked.designs += 1;
    }
    drop(conn);
    let shared = count(
        stack,
        "SELECT count(*) AS n FROM (SELECT object_key FROM design_images
           GROUP BY object_key HAVING count(*) > 1) s",
    )
    .await;
    assert_eq!(shared, 0, "object keys shared by designs");
    let discarded = count(
        stack,
        "SELECT count(*) AS n FROM designs d JOIN pool_items p ON p.id = d.pool_item_id
          WHERE p.state <> 'used'",
    )
    .await;
    assert_eq!(discarded, 0, "pool items of designs not `used`");
    let after_delete = count(
        stack,
        "SELECT count(*) AS n FROM designs d JOIN templates t ON t.id = d.template_id
          WHERE t.deleted_at IS NOT NULL AND d.created_at > t.deleted_at",
    )
    .await;
    assert_eq!(
        after_delete, 0,
        "designs recorded after their template's delete"
    );
    checked
}

/// Every listed id of `template`'s current list is distinct; with `quiet`,
/// also `ready` in the ledger and every ready item listed -- once the ids
/// the API popped ahead (`serving.prefetch_hold_ms`, 500 ms unless the test
/// set it) are listed again: checked for up to 3 s.
pub async fn check_pool_list(stack: &TestStack, template: TemplateId, quiet: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match pool_list_differs(stack, template, quiet).await {
            None => return,
            Some(why) if std::time::Instant::now() >= deadline => panic!("{why}"),
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

async fn pool_list_differs(stack: &TestStack, template: TemplateId, quiet: bool) -> Option<String> {
    let mut conn = stack.db.conn().await.expect("db");
    // A deleted template has no list to check.
    let row = prewarm_store::db::templates::find_row(&mut conn, template)
        .await
        .expect("template row")?;
    let listed = stack.index.list(row.pool()).await.expect("LRANGE");
    let distinct: HashSet<_> = listed.iter().collect();
    assert_eq!(
        distinct.len(),
        listed.len(),
        "pool list of {template} holds an id twice: {listed:?}"
    );
    if quiet {
        let ready = prewarm_store::db::pool_items::ready_ids(&mut conn, row.pool())
            .await
            .expect("ready ids");
        let ready: HashSet<_> = ready.iter().collect();
        if distinct != ready {
            return Some(format!(
                "pool list of {template} differs from the ledger's ready items: listed {distinct:?}, ready {ready:?}"
            ));
        }
    }
    None
}
