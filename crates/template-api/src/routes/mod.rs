//! One module per resource; the route table itself is in `startup.rs`.

pub mod admin;
pub mod designs;
pub mod health;
pub mod templates;

use serde::Deserialize;

/// `?limit=&offset=` on list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    pub const MAX_LIMIT: i64 = 100;

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, Self::MAX_LIMIT)
    }

    pub fn offset(&self) -> i64 {
        self.offset.unwrap_or(0).max(0)
    }
}
