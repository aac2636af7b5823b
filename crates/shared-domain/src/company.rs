//! Companies (tenants) and their API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, CompanyId};
use crate::valid::{CompanyName, DesignLimit, Invalid};

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
    #[schemars(length(min = 1, max = 200), pattern(crate::valid::NOT_BLANK))]
    pub name: String,
    #[schemars(range(min = 0, max = 1_000_000))]
    #[serde(deserialize_with = "crate::json_number::integer")]
    pub design_limit: i32,
}

/// A company to create with every field parsed ([`NewCompany::parse`]): the
/// only form the store accepts.
#[derive(Debug, Clone)]
pub struct ValidCompany {
    pub name: CompanyName,
    pub design_limit: DesignLimit,
}

impl NewCompany {
    /// Its name trimmed, every field parsed by its type ([`crate::valid`]).
    pub fn parse(&self) -> Result<ValidCompany, Invalid> {
        Ok(ValidCompany {
            name: CompanyName::parse(self.name.trim())?,
            design_limit: DesignLimit::parse(self.design_limit)?,
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
    #[serde(default, deserialize_with = "crate::json_number::optional_integer")]
    #[schemars(range(max = 2_592_000))]
    pub grace_secs: Option<u64>,
}

/// `POST /admin/api-keys/{id}/rotate` answer: the new key (shown once) and
/// when the old one stops working.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKeyRotated {
    pub new_key: ApiKeyCreated,
    pub old_key_expires_at: DateTime<Utc>,
}
