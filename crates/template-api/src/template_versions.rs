//! The current version of the templates this replica recently made designs
//! of, so a warm `POST /designs` pops from the right pool list without
//! reading the template row first: the claim itself checks the version (and
//! the company's right to see the template) on the locked row. A stale entry
//! costs one refused claim, after which the template is read again; edits
//! and deletes drop entries at once on every replica (the invalidation
//! channel), so that is rare.

use std::collections::HashMap;
use std::sync::RwLock;

use shared_domain::ids::{TemplateId, TemplateVersion};

/// Entries kept before the map is emptied (each is a few dozen bytes).
const CAPACITY: usize = 100_000;

#[derive(Debug, Default)]
pub struct TemplateVersions {
    versions: RwLock<HashMap<TemplateId, TemplateVersion>>,
}

impl TemplateVersions {
    pub fn get(&self, template: TemplateId) -> Option<TemplateVersion> {
        self.versions.read().ok()?.get(&template).copied()
    }

    pub fn remember(&self, template: TemplateId, version: TemplateVersion) {
        if let Ok(mut map) = self.versions.write() {
            if map.len() >= CAPACITY && !map.contains_key(&template) {
                map.clear();
            }
            map.insert(template, version);
        }
    }

    pub fn forget(&self, template: TemplateId) {
        if let Ok(mut map) = self.versions.write() {
            map.remove(&template);
        }
    }

    pub fn forget_all(&self) {
        if let Ok(mut map) = self.versions.write() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let v = TemplateVersions::default();
        let t = TemplateId::new();
        assert_eq!(v.get(t), None);
        v.remember(t, TemplateVersion(3));
        assert_eq!(v.get(t), Some(TemplateVersion(3)));
        v.forget(t);
        assert_eq!(v.get(t), None);
        for _ in 0..CAPACITY + 10 {
            v.remember(TemplateId::new(), TemplateVersion::FIRST);
        }
        assert!(v.versions.read().unwrap().len() <= CAPACITY);
    }
}
