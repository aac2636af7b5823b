//! Templates: a layout (JSON document) plus an ordered list of images in S3.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CompanyId, TemplateId};
use crate::valid::{Category, Invalid, Layout, TemplateName};

/// The most images a template may hold; enforced by the API before any
/// write (its text and layout rules are in [`crate::valid`]).
pub const MAX_IMAGES: usize = 200;

/// Who may use a template.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Only the owning company sees and uses it.
    #[default]
    Private,
    /// Every company may read it and create designs from it; only the owner edits it.
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "private" => Some(Visibility::Private),
            "public" => Some(Visibility::Public),
            _ => None,
        }
    }
}

/// One image of a template version, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateImage {
    pub position: i32,
    pub object_key: String,
    pub content_type: String,
    pub size_bytes: i64,
}

/// A template at its current version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Template {
    pub id: TemplateId,
    pub owner_company_id: CompanyId,
    pub visibility: Visibility,
    pub name: String,
    pub category: String,
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub layout: serde_json::Value,
    /// Bumped by every edit of the layout or the images.
    pub version: i32,
    pub images: Vec<TemplateImage>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The `metadata` part of `POST /templates` (multipart); the `image` parts follow it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    #[schemars(length(min = 1, max = 200), pattern(crate::valid::NOT_BLANK))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = 100), pattern(crate::valid::NO_NUL))]
    pub category: String,
    #[serde(default = "empty_layout")]
    #[schemars(with = "crate::json_number::LayoutSchema")]
    pub layout: serde_json::Value,
    #[serde(default)]
    pub visibility: Visibility,
}

fn empty_layout() -> serde_json::Value {
    serde_json::json!({})
}

impl Template {
    /// The entity tag of this representation (RFC 9110), quoted: it changes
    /// with every edit (the version counts layout and image changes only,
    /// so the edit time is part of it).
    pub fn etag(&self) -> String {
        etag(self.id, self.version, self.updated_at)
    }
}

/// The entity tag of a template at `version`, last edited at `updated_at`.
pub fn etag(id: TemplateId, version: i32, updated_at: DateTime<Utc>) -> String {
    let micros = updated_at.timestamp_micros();
    format!("\"{}-{version}-{micros:x}\"", id.0.simple())
}

/// `PATCH /templates/{id}` body: any subset of fields. A layout change bumps the version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatePatch {
    #[schemars(length(min = 1, max = 200), pattern(crate::valid::NOT_BLANK))]
    pub name: Option<String>,
    #[schemars(length(max = 100), pattern(crate::valid::NO_NUL))]
    pub category: Option<String>,
    #[schemars(with = "Option<crate::json_number::LayoutSchema>")]
    pub layout: Option<serde_json::Value>,
    pub visibility: Option<Visibility>,
}

/// A template to create with every field parsed ([`NewTemplate::parse`]):
/// the only form the store accepts.
#[derive(Debug, Clone)]
pub struct ValidTemplate {
    pub name: TemplateName,
    pub category: Category,
    pub layout: Layout,
    pub visibility: Visibility,
}

impl NewTemplate {
    /// Every field parsed by its type ([`crate::valid`]).
    pub fn parse(self) -> Result<ValidTemplate, Invalid> {
        Ok(ValidTemplate {
            name: TemplateName::parse(&self.name)?,
            category: Category::parse(&self.category)?,
            layout: Layout::parse(&self.layout)?,
            visibility: self.visibility,
        })
    }
}

/// An edit with every field given parsed ([`TemplatePatch::parse`]); the
/// default changes nothing (an image replacement).
#[derive(Debug, Clone, Default)]
pub struct ValidPatch {
    pub name: Option<TemplateName>,
    pub category: Option<Category>,
    pub layout: Option<Layout>,
    pub visibility: Option<Visibility>,
}

impl TemplatePatch {
    /// Every field given parsed by its type ([`crate::valid`]).
    pub fn parse(self) -> Result<ValidPatch, Invalid> {
        Ok(ValidPatch {
            name: self.name.as_deref().map(TemplateName::parse).transpose()?,
            category: self.category.as_deref().map(Category::parse).transpose()?,
            layout: self.layout.as_ref().map(Layout::parse).transpose()?,
            visibility: self.visibility,
        })
    }
}

/// A page of templates.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateList {
    pub templates: Vec<Template>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What "similar templates" shows of each template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateSummary {
    pub id: TemplateId,
    pub owner_company_id: CompanyId,
    pub visibility: Visibility,
    pub name: String,
    pub category: String,
    pub version: i32,
}

/// `GET /templates/{id}/similar?page=N`: up to `page_size` templates of the
/// source's category visible to the caller, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SimilarTemplates {
    pub template_id: TemplateId,
    pub page: u32,
    pub items: Vec<TemplateSummary>,
    /// The next page, when there may be one.
    pub next_page: Option<u32>,
}
