//! The S3 key scheme. Every object the system writes lives under one of three
//! prefixes, so ownership (and, later, garbage collection) reads off the key:
//!
//! - `templates/{template}/{upload}`: a template's source images (uploaded).
//! - `pool/{template}/{item}/{position}`: a pool item's copies; they keep this
//!   key when the item becomes a design (S3 has no rename, and the key is unique).
//! - `designs/{design}/{position}`: copies made on the cold path for one design.

use uuid::Uuid;

use crate::ids::{DesignId, PoolItemId, TemplateId};

pub const TEMPLATES_PREFIX: &str = "templates/";
pub const POOL_PREFIX: &str = "pool/";
pub const DESIGNS_PREFIX: &str = "designs/";

/// Key for a newly uploaded template image. A fresh UUID per upload means an
/// edit never overwrites an object an older version still points at.
pub fn template_image(template: TemplateId) -> String {
    format!("{TEMPLATES_PREFIX}{template}/{}", Uuid::now_v7())
}

pub fn pool_image(template: TemplateId, item: PoolItemId, position: i32) -> String {
    format!("{POOL_PREFIX}{template}/{item}/{position:04}")
}

pub fn design_image(design: DesignId, position: i32) -> String {
    format!("{DESIGNS_PREFIX}{design}/{position:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_owner_prefix_and_are_unique() {
        let t = TemplateId::new();
        let a = pool_image(t, PoolItemId::new(), 0);
        let b = pool_image(t, PoolItemId::new(), 0);
        assert!(a.starts_with(POOL_PREFIX));
        assert_ne!(a, b);
        assert!(design_image(DesignId::new(), 3).ends_with("/0003"));
        assert_ne!(template_image(t), template_image(t));
    }
}
