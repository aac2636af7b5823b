//! Designs: a company's own copy of one template version, with its own S3 objects.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CompanyId, DesignId, PoolItemId, TemplateId, TemplateVersion};

/// How a design's objects came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServedFrom {
    /// Taken ready-made from the warm pool (milliseconds).
    Pool,
    /// Copied on the request path because the pool was empty (seconds).
    Copy,
}

impl ServedFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            ServedFrom::Pool => "pool",
            ServedFrom::Copy => "copy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pool" => Some(ServedFrom::Pool),
            "copy" => Some(ServedFrom::Copy),
            _ => None,
        }
    }
}

/// One image of a design: an S3 object owned by this design alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DesignImage {
    pub position: i32,
    pub object_key: String,
    /// A time-limited GET URL of the object, only with `?include=urls`
    /// (valid until the design's `urls_expire_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A company's design.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Design {
    pub id: DesignId,
    pub company_id: CompanyId,
    pub template_id: TemplateId,
    pub template_version: TemplateVersion,
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub layout: serde_json::Value,
    pub images: Vec<DesignImage>,
    pub served_from: ServedFrom,
    /// The pool item it was made from, when served warm.
    pub pool_item_id: Option<PoolItemId>,
    pub created_at: DateTime<Utc>,
    /// When the images' `url`s stop working (only with `?include=urls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls_expire_at: Option<DateTime<Utc>>,
}

/// `POST /designs` body.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDesign {
    pub template_id: TemplateId,
}

/// `GET /designs` answer.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DesignList {
    pub designs: Vec<Design>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
