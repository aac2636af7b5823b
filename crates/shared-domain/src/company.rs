//! Companies (tenants) and their API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, CompanyId};
use crate::valid::{CompanyName, DesignLimit, Invalid};

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
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    #[schemars(range(min = 0, max = 1_000_000))]
    pub design_limit: i32,
}

impl NewCompany {
    /// The company to create: its name trimmed, every field checked by its
    /// type ([`crate::valid`]).
    pub fn validated(&self) -> Result<NewCompany, Invalid> {
        let name = CompanyName::parse(self.name.trim())?;
        let limit = DesignLimit::parse(self.design_limit)?;
        Ok(NewCompany {
            name: name.into_string(),
            design_limit: limit.get(),
        })
    }
}

/// `POST /admin/companies/{id}/api-keys` answer. The secret is shown once only;
/// the server keeps just its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKeyCreated {
    pub id: ApiKeyId,
    pub company_id: CompanyId,
    pub api_key: String,
}

/// One API key as listed to the admin: never its secret, only the first
/// characters (`hint`) so a person can tell keys apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub company_id: CompanyId,
    pub hint: String,
    pub created_at: DateTime<Utc>,
    /// Set once revoked: the key no longer authenticates.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Set on a rotated key: it authenticates until then.
    pub expires_at: Option<DateTime<Utc>>,
}

/// `GET /admin/companies/{id}/api-keys` answer.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyInfo>,
}

/// `POST /admin/api-keys/{id}/rotate` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// How long the old key keeps working (default 24 h, at most 30 days; 0 ends it at once).
    #[serde(default)]
    pub grace_secs: Option<u64>,
}

/// `POST /admin/api-keys/{id}/rotate` answer: the new key (shown once) and
/// when the old one stops working.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKeyRotated {
    pub new_key: ApiKeyCreated,
    pub old_key_expires_at: DateTime<Utc>,
}
