//! `companies`: tenants and their plan limit.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared_domain::company::{Company, ValidCompany};
use shared_domain::ids::CompanyId;
use uuid::Uuid;

use super::schema::companies;
use super::StoreError;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = companies)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct CompanyRow {
    pub id: Uuid,
    pub name: String,
    pub design_limit: i32,
    pub design_count: i32,
    pub created_at: DateTime<Utc>,
}

impl From<CompanyRow> for Company {
    fn from(row: CompanyRow) -> Self {
        Company {
            id: CompanyId(row.id),
            name: row.name,
            design_limit: row.design_limit,
            design_count: row.design_count,
            created_at: row.created_at,
        }
    }
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &ValidCompany,
) -> Result<Company, StoreError> {
    let row = CompanyRow {
        id: CompanyId::new().0,
        name: new.name.as_str().to_string(),
        design_limit: new.design_limit.get(),
        design_count: 0,
        created_at: super::now(),
    };
    let row: CompanyRow = diesel::insert_into(companies::table)
        .values(&row)
        .returning(CompanyRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(row.into())
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    id: CompanyId,
) -> Result<Option<Company>, StoreError> {
    let row = companies::table
        .find(id.0)
        .select(CompanyRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(Company::from))
}

/// Does the company have room for one more design? A cheap pre-check made
/// before copying on the cold path; the binding check is [`take_design_slot`].
pub async fn has_design_room(
    conn: &mut AsyncPgConnection,
    id: CompanyId,
) -> Result<bool, StoreError> {
    let room: Option<bool> = companies::table
        .find(id.0)
        .select(companies::design_count.lt(companies::design_limit))
        .first(conn)
        .await
        .optional()?;
    Ok(room.unwrap_or(false))
}

/// Counts one more design against the plan limit, atomically: false when the
/// company is at its limit. Call inside the transaction that inserts the design.
pub async fn take_design_slot(
    conn: &mut AsyncPgConnection,
    id: CompanyId,
) -> Result<bool, diesel::result::Error> {
    let updated = diesel::update(
        companies::table
            .find(id.0)
            .filter(companies::design_count.lt(companies::design_limit)),
    )
    .set(companies::design_count.eq(companies::design_count + 1))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Gives a slot back when a design is deleted.
pub async fn release_design_slot(
    conn: &mut AsyncPgConnection,
    id: CompanyId,
) -> Result<(), diesel::result::Error> {
    diesel::update(
        companies::table
            .find(id.0)
            .filter(companies::design_count.gt(0)),
    )
    .set(companies::design_count.eq(companies::design_count - 1))
    .execute(conn)
    .await?;
    Ok(())
}
