//! Typed identifiers. Each id wraps a UUID so a template id can never be
//! passed where a design id is expected; all serialize as plain UUID
//! strings. [`TemplateVersion`] wraps the version number the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7 keeps B-tree inserts local).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
    };
}

id_type!(
    /// A tenant.
    CompanyId
);
id_type!(
    /// A template (layout + ordered images).
    TemplateId
);
id_type!(
    /// A company's own copy of a template version.
    DesignId
);
id_type!(
    /// A ready-made copy waiting in a template's warm pool.
    PoolItemId
);
id_type!(
    /// An API key (the id, never the secret).
    ApiKeyId
);

/// A template's version: 1 when created, bumped by every edit of its
/// layout or images. A design and a pool item each record the version they
/// were copied from; a pool holds the items of one version.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct TemplateVersion(pub i32);

impl TemplateVersion {
    /// A new template's version.
    pub const FIRST: Self = Self(1);

    /// The version an edit of the layout or the images makes.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The version this one replaced, if any.
    pub fn previous(self) -> Option<Self> {
        (self.0 > 1).then(|| Self(self.0 - 1))
    }
}

impl fmt::Display for TemplateVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = TemplateId::new();
        let parsed: TemplateId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert!("not-a-uuid".parse::<TemplateId>().is_err());
    }
}
