//! Templates: a layout (JSON document) plus an ordered list of images in S3.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CompanyId, TemplateId, TemplateVersion};
use crate::pool::PoolKey;
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
    pub version: TemplateVersion,
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

    /// The pool of this version.
    pub fn pool(&self) -> PoolKey {
        PoolKey::new(self.id, self.version)
    }
}

/// The entity tag of a template at `version`, last edited at `updated_at`.
pub fn etag(id: TemplateId, version: TemplateVersion, updated_at: DateTime<Utc>) -> String {
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

/// What an edit does to a template: the rule that decides when its version
/// moves (and so when its pools of the old version stop being served).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditEffect {
    /// Every field it sets already has that value: nothing is written.
    Unchanged,
    /// Its name, category or visibility changed: written, same version (its
    /// pool stays servable: designs copy images and layout, not those).
    Described,
    /// Its layout or its images changed: a new version.
    NewVersion,
}

/// A template's editable fields as stored, borrowed for [`ValidPatch::apply`].
#[derive(Debug)]
pub struct EditableFields<'a> {
    pub name: &'a mut String,
    pub category: &'a mut String,
    pub layout: &'a mut serde_json::Value,
    pub visibility: &'a mut String,
}

impl ValidPatch {
    /// Sets what the patch gives on `fields` and says what that did; new
    /// images (`images_replaced`) are a new version whatever else changed.
    /// A patch that sets the layout the template already has is not one.
    pub fn apply(self, fields: EditableFields<'_>, images_replaced: bool) -> EditEffect {
        let mut described = false;
        let mut set = |field: &mut String, value: String| {
            if *field != value {
                *field = value;
                described = true;
            }
        };
        if let Some(name) = self.name {
            set(fields.name, name.into_string());
        }
        if let Some(category) = self.category {
            set(fields.category, category.into_string());
        }
        if let Some(visibility) = self.visibility {
            set(fields.visibility, visibility.as_str().to_string());
        }
        let mut relaid = false;
        if let Some(layout) = self.layout {
            let layout = layout.into_value();
            if *fields.layout != layout {
                *fields.layout = layout;
                relaid = true;
            }
        }
        match (relaid || images_replaced, described) {
            (true, _) => EditEffect::NewVersion,
            (false, true) => EditEffect::Described,
            (false, false) => EditEffect::Unchanged,
        }
    }
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
    pub version: TemplateVersion,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patch(body: serde_json::Value) -> ValidPatch {
        serde_json::from_value::<TemplatePatch>(body)
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Applies `body` to a template named "a" in "c", private, with layout
    /// `{"w": 1}`; returns the effect and the fields after.
    fn apply(body: serde_json::Value, images: bool) -> (EditEffect, [String; 4]) {
        let (mut name, mut category) = ("a".to_string(), "c".to_string());
        let (mut layout, mut visibility) = (json!({"w": 1}), "private".to_string());
        let effect = patch(body).apply(
            EditableFields {
                name: &mut name,
                category: &mut category,
                layout: &mut layout,
                visibility: &mut visibility,
            },
            images,
        );
        (effect, [name, category, layout.to_string(), visibility])
    }

    #[test]
    fn only_a_new_layout_or_new_images_move_the_version() {
        use EditEffect::*;
        assert_eq!(apply(json!({}), false).0, Unchanged);
        assert_eq!(
            apply(
                json!({"name": "a", "layout": {"w": 1}, "visibility": "private"}),
                false
            )
            .0,
            Unchanged,
            "setting what it has is no edit"
        );
        let (effect, fields) = apply(json!({"name": "b", "category": "d"}), false);
        assert_eq!(effect, Described);
        assert_eq!(fields[..2], ["b".to_string(), "d".to_string()]);
        assert_eq!(apply(json!({"visibility": "public"}), false).0, Described);
        let (effect, fields) = apply(json!({"layout": {"w": 2}}), false);
        assert_eq!((effect, fields[2].as_str()), (NewVersion, r#"{"w":2}"#));
        assert_eq!(
            apply(json!({"name": "b"}), true).0,
            NewVersion,
            "new images"
        );
        assert_eq!(apply(json!({}), true).0, NewVersion);
    }
}
