//! Where a list page starts: after a keyset cursor (`created_at`, `id`,
//! newest first -- stable while rows are inserted), or at an offset (the
//! deprecated way, kept working).

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum PageAt {
    /// Rows after (older than) this one.
    After { created_at: DateTime<Utc>, id: Uuid },
    /// Skip this many rows (deprecated).
    Offset(i64),
}

impl PageAt {
    pub const FIRST: PageAt = PageAt::Offset(0);

    /// The opaque cursor of the page after the row (`created_at`, `id`).
    pub fn cursor_after(created_at: DateTime<Utc>, id: Uuid) -> String {
        let mut bytes = created_at.timestamp_micros().to_be_bytes().to_vec();
        bytes.extend_from_slice(id.as_bytes());
        hex::encode(&bytes)
    }

    /// Reads a cursor made by [`PageAt::cursor_after`].
    pub fn from_cursor(cursor: &str) -> Option<PageAt> {
        let bytes = hex::decode(cursor).ok()?;
        if bytes.len() != 24 {
            return None;
        }
        let micros = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        // A forged cursor may name any time; Postgres takes 4713 BC to
        // 294276 AD, rows are made today: only 1970 to 9999 reads back.
        if !(0..=MAX_MICROS).contains(&micros) {
            return None;
        }
        let created_at = DateTime::from_timestamp_micros(micros)?;
        let id = Uuid::from_slice(&bytes[8..]).ok()?;
        Some(PageAt::After { created_at, id })
    }
}

/// 9999-12-31T23:59:59.999999Z in microseconds since 1970.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_garbage_is_refused() {
        let at = crate::db::now();
        let id = Uuid::new_v4();
        let cursor = PageAt::cursor_after(at, id);
        assert_eq!(
            PageAt::from_cursor(&cursor),
            Some(PageAt::After { created_at: at, id })
        );
        let far_future = format!("ac08381e1f0f1d5f{}", &cursor[16..]);
        for bad in ["", "zz", "abc", &cursor[..46], "00", &far_future] {
            assert_eq!(PageAt::from_cursor(bad), None, "{bad}");
        }
    }
}
