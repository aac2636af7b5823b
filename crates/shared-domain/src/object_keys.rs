//! The S3 key scheme. Every object the system writes lives under one of three
//! prefixes, so ownership (and, later, garbage collection) reads off the key:
//!
//! - `templates/{template}/{upload}`: a template's source images (uploaded).
//! - `pool/{template}/{hh}/{item}/{position}`: a pool item's copies; they
//!   keep this key when the item becomes a design (S3 has no rename, and the
//!   key is unique).
//! - `designs/{hh}/{design}/{position}`: copies made on the cold path for one
//!   design.
//!
//! `{hh}` is two hex digits taken from the random bits of the item's or
//! design's id: S3 serves about 3,500 writes a second per key prefix, so a
//! popular template's refills spread over 256 prefixes (and cold designs,
//! whose ids are time-ordered, do not all land on the newest one).

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
    format!(
        "{POOL_PREFIX}{template}/{:02x}/{item}/{position:04}",
        spread(item.0)
    )
}

/// [`pool_image`] for each of `positions`, the common prefix formatted once
/// (the warm path derives a design's keys this way on every claim).
pub fn pool_images(template: TemplateId, item: PoolItemId, positions: &[i32]) -> Vec<String> {
    use std::fmt::Write;
    let prefix = format!("{POOL_PREFIX}{template}/{:02x}/{item}/", spread(item.0));
    positions
        .iter()
        .map(|position| {
            let mut key = String::with_capacity(prefix.len() + 4);
            key.push_str(&prefix);
            // Writing to a String cannot fail.
            let _ = write!(key, "{position:04}");
            key
        })
        .collect()
}

pub fn design_image(design: DesignId, position: i32) -> String {
    format!(
        "{DESIGNS_PREFIX}{:02x}/{design}/{position:04}",
        spread(design.0)
    )
}

/// The spreading byte: the id's last byte, random in v4 and v7 UUIDs alike.
fn spread(id: Uuid) -> u8 {
    id.as_bytes()[15]
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

    #[test]
    fn pool_images_are_pool_image_for_each_position() {
        let (t, item) = (TemplateId::new(), PoolItemId::new());
        let positions = [0, 7, 29, 199, 12345];
        let one_by_one: Vec<String> = positions.iter().map(|&p| pool_image(t, item, p)).collect();
        assert_eq!(pool_images(t, item, &positions), one_by_one);
    }

    #[test]
    fn keys_spread_over_256_hashed_prefixes() {
        let t = TemplateId::new();
        let pool: std::collections::HashSet<String> = (0..4096)
            .map(|_| pool_image(t, PoolItemId::new(), 0)[..POOL_PREFIX.len() + 36 + 3].to_string())
            .collect();
        let designs: std::collections::HashSet<String> = (0..4096)
            .map(|_| design_image(DesignId::new(), 0)[..DESIGNS_PREFIX.len() + 2].to_string())
            .collect();
        assert!(pool.len() > 240, "{} pool prefixes", pool.len());
        assert!(designs.len() > 240, "{} design prefixes", designs.len());
    }
}
