//! Companies (tenants) and their API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, CompanyId};

/// The most designs a company's plan may allow; guards against typos like 1e12.
pub const MAX_DESIGN_LIMIT: i32 = 1_000_000;

/// A tenant with a plan limit on how many designs it may own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Company {
    pub id: CompanyId,
    pub name: String,
    pub design_limit: i32,
    pub design_count: i32,
    pub created_at: DateTime<Utc>,
}

/// `POST /admin/companies` body.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCompany {
    pub name: String,
    pub design_limit: i32,
}

/// `POST /admin/companies/{id}/api-keys` answer. The secret is shown once only;
/// the server keeps just its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKeyCreated {
    pub id: ApiKeyId,
    pub company_id: CompanyId,
    pub api_key: String,
}
