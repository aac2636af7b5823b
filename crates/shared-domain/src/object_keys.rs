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

/// The keys of an item of `count` images: [`pool_image`] for positions 0
/// to `count - 1`, the common prefix formatted once (the warm path derives
/// a design's keys this way on every claim).
pub fn pool_images(template: TemplateId, item: PoolItemId, count: i32) -> Vec<String> {
    use std::fmt::Write;
    let prefix = format!("{POOL_PREFIX}{template}/{:02x}/{item}/", spread(item.0));
    (0..count.max(0))
        .map(|position| {
            let mut key = String::with_capacity(prefix.len() + 4);
            key.push_str(&prefix);
            // Writing to a String cannot fail.
            let _ = write!(key, "{position:04}");
            key
        })
        .collect()
}

/// The owner of a key written by [`pool_image`]: its template, item and
/// position. Only the exact form `pool_image` writes is read (anything else
/// under `pool/` -- a stray or hand-made object -- owns nothing: garbage).
pub fn parse_pool_image(key: &str) -> Option<(TemplateId, PoolItemId, i32)> {
    let mut parts = key.strip_prefix(POOL_PREFIX)?.split('/');
    let template = TemplateId(Uuid::parse_str(parts.next()?).ok()?);
    let _spread = parts.next()?;
    let item = PoolItemId(Uuid::parse_str(parts.next()?).ok()?);
    let position: i32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || position < 0 || pool_image(template, item, position) != key {
        return None;
    }
    Some((template, item, position))
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
        let one_by_one: Vec<String> = (0..12_345).map(|p| pool_image(t, item, p)).collect();
        assert_eq!(pool_images(t, item, 12_345), one_by_one);
        assert!(pool_images(t, item, 0).is_empty());
        assert!(pool_images(t, item, -1).is_empty());
    }

    #[test]
    fn a_pool_key_reads_back_its_owner_and_nothing_else_does() {
        let (t, item) = (TemplateId::new(), PoolItemId::new());
        for p in [0, 9, 10_000, 123_456] {
            assert_eq!(
                parse_pool_image(&pool_image(t, item, p)),
                Some((t, item, p))
            );
        }
        let key = pool_image(t, item, 3);
        let other_spread = {
            let hh = &key[POOL_PREFIX.len() + 37..POOL_PREFIX.len() + 39];
            key.replacen(
                &format!("/{hh}/"),
                if hh == "00" { "/01/" } else { "/00/" },
                1,
            )
        };
        for stray in [
            other_spread.as_str(),
            &format!("{key}/x"),
            &key.replace("/0003", "/3"),
            &key.replace("/0003", "/-003"),
            &format!("pool/{t}/00/orphan-1/0000"),
            "pool/crashed/item/0000",
            &key.replacen(POOL_PREFIX, DESIGNS_PREFIX, 1),
            &key.to_uppercase(),
        ] {
            assert_eq!(parse_pool_image(stray), None, "{stray}");
        }
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
