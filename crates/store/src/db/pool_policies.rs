//! Pool policies an operator sets (`template_pool_policies`,
//! `company_pool_policies`): stored as the JSON the API validated
//! (`shared_domain::pool_policy`), read back whole by the sizer when
//! `pool_policy_version` moved (every write bumps it in its transaction).

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Jsonb, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{demand_profile, pool_policy_version, template_pool_policies};
use super::StoreError;

/// Whose policy: one template's, or a company's default for its templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Template(Uuid),
    Company(Uuid),
}

impl Scope {
    fn table(self) -> (&'static str, &'static str, Uuid) {
        match self {
            Scope::Template(id) => ("template_pool_policies", "template_id", id),
            Scope::Company(id) => ("company_pool_policies", "company_id", id),
        }
    }
}

#[derive(QueryableByName)]
struct PolicyText {
    #[diesel(sql_type = Text)]
    policy: String,
}

/// A stored policy: whose, and its JSON.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct StoredPolicy {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub policy: String,
}

/// Stores `policy` (JSON the caller validated) for `scope`, replacing any.
pub async fn put(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    policy: &serde_json::Value,
) -> Result<(), StoreError> {
    let (table, column, id) = scope.table();
    let policy = policy.clone();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query(format!(
            "INSERT INTO {table} ({column}, policy, updated_at) VALUES ($1, $2, now())
             ON CONFLICT ({column}) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()"
        ))
        .bind::<SqlUuid, _>(id)
        .bind::<Jsonb, _>(&policy)
        .execute(conn)
        .await?;
        bump(conn).await
    })
    .await?;
    Ok(())
}

/// The policy stored for `scope` (its JSON), if any.
pub async fn get(conn: &mut AsyncPgConnection, scope: Scope) -> Result<Option<String>, StoreError> {
    let (table, column, id) = scope.table();
    let row: Option<PolicyText> = diesel::sql_query(format!(
        "SELECT policy::text AS policy FROM {table} WHERE {column} = $1"
    ))
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|r| r.policy))
}

/// Removes `scope`'s policy; whether there was one.
pub async fn delete(conn: &mut AsyncPgConnection, scope: Scope) -> Result<bool, StoreError> {
    let (table, column, id) = scope.table();
    let deleted = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let n = diesel::sql_query(format!("DELETE FROM {table} WHERE {column} = $1"))
                .bind::<SqlUuid, _>(id)
                .execute(conn)
                .await?;
            if n > 0 {
                bump(conn).await?;
            }
            Ok(n > 0)
        })
        .await?;
    Ok(deleted)
}

/// In a template's delete transaction: its own policy and its forecast
/// profile go, and when a policy governed it (its own or its company's)
/// the version moves, so the sizer stops planning it at its next pass
/// (a deleted template kept in the plan would hold its floor of the budget).
pub async fn template_deleted(
    conn: &mut AsyncPgConnection,
    template: Uuid,
    owner: Uuid,
) -> Result<(), diesel::result::Error> {
    let own = diesel::delete(template_pool_policies::table.find(template))
        .execute(conn)
        .await?;
    let company: Option<StoredPolicy> = diesel::sql_query(
        "SELECT company_id AS id, policy::text AS policy FROM company_pool_policies WHERE company_id = $1",
    )
    .bind::<SqlUuid, _>(owner)
    .get_result(conn)
    .await
    .optional()?;
    diesel::delete(demand_profile::table.filter(demand_profile::template_id.eq(template)))
        .execute(conn)
        .await?;
    if own > 0 || company.is_some() {
        bump(conn).await?;
    }
    Ok(())
}

async fn bump(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    diesel::update(pool_policy_version::table.find(true))
        .set(pool_policy_version::version.eq(pool_policy_version::version + 1))
        .execute(conn)
        .await
        .map(drop)
}

/// The policies' version: moves with every write.
pub async fn version(conn: &mut AsyncPgConnection) -> Result<i64, StoreError> {
    let v: Option<i64> = pool_policy_version::table
        .find(true)
        .select(pool_policy_version::version)
        .get_result(conn)
        .await
        .optional()?;
    Ok(v.unwrap_or(0))
}

/// Every live template's policy and every company's, at most `limit` of
/// each (the sizer holds them in memory).
pub async fn load_all(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<(Vec<StoredPolicy>, Vec<StoredPolicy>), StoreError> {
    let templates = diesel::sql_query(
        "SELECT p.template_id AS id, p.policy::text AS policy
           FROM template_pool_policies p JOIN templates t ON t.id = p.template_id
          WHERE t.deleted_at IS NULL ORDER BY p.updated_at DESC LIMIT $1",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    let companies = diesel::sql_query(
        "SELECT company_id AS id, policy::text AS policy FROM company_pool_policies
          ORDER BY updated_at DESC LIMIT $1",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok((templates, companies))
}

/// A live template a company policy governs.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Governed {
    #[diesel(sql_type = SqlUuid)]
    pub template_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub company_id: Uuid,
}

/// Live templates of `companies` created in `(after, upper]` (seconds since
/// the epoch; `None`: unbounded on that side), at most `limit`: the templates their
/// companies' default policies govern. The owner's index range per company.
pub async fn company_templates(
    conn: &mut AsyncPgConnection,
    companies: &[Uuid],
    after: Option<f64>,
    upper: Option<f64>,
    limit: i64,
) -> Result<Vec<Governed>, StoreError> {
    if companies.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(
        "SELECT id AS template_id, owner_company_id AS company_id FROM templates
          WHERE owner_company_id = ANY($1) AND deleted_at IS NULL
            AND ($2::float8 IS NULL OR created_at > to_timestamp($2))
            AND ($3::float8 IS NULL OR created_at <= to_timestamp($3))
          LIMIT $4",
    )
    .bind::<Array<SqlUuid>, _>(companies)
    .bind::<diesel::sql_types::Nullable<Double>, _>(after)
    .bind::<diesel::sql_types::Nullable<Double>, _>(upper)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}
