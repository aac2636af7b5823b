//! The opaque keyset cursor of a list page: the (`created_at`, `id`) of the
//! last row shown, as 48 hex digits. Clients pass it back as `?cursor=`;
//! a cursor this API did not make is refused, never trusted.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A decoded cursor: rows older than this one come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Length of a cursor's text (8 bytes of time, 16 of id, in hex).
pub const CURSOR_LEN: usize = 48;

/// 9999-12-31T23:59:59.999999Z in microseconds since 1970.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

impl Cursor {
    /// The cursor's text.
    pub fn encode(&self) -> String {
        let mut bytes = self.created_at.timestamp_micros().to_be_bytes().to_vec();
        bytes.extend_from_slice(self.id.as_bytes());
        hex::encode(&bytes)
    }

    /// Reads a cursor made by [`Cursor::encode`]; `None` for anything else.
    pub fn decode(text: &str) -> Option<Cursor> {
        if text.len() != CURSOR_LEN {
            return None;
        }
        let bytes = hex::decode(text).ok()?;
        let micros = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        // A forged cursor may name any time; Postgres takes 4713 BC to
        // 294276 AD, rows are made today: only 1970 to 9999 reads back.
        if !(0..=MAX_MICROS).contains(&micros) {
            return None;
        }
        let created_at = DateTime::from_timestamp_micros(micros)?;
        let id = Uuid::from_slice(&bytes[8..]).ok()?;
        Some(Cursor { created_at, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap();
        let cursor = Cursor {
            created_at: at,
            id: Uuid::new_v4(),
        };
        let text = cursor.encode();
        assert_eq!(text.len(), CURSOR_LEN);
        assert_eq!(Cursor::decode(&text), Some(cursor));
        let far_future = format!("ac08381e1f0f1d5f{}", &text[16..]);
        let before_1970 = format!("ff{}", &text[2..]);
        for bad in [
            "",
            "zz",
            "abc",
            &text[..46],
            "00",
            &far_future,
            &before_1970,
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
        assert_eq!(
            Cursor::decode(&"é".repeat(24)),
            None,
            "multi-byte text of the right length"
        );
    }
}
