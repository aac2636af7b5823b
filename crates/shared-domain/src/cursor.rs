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

/// The most rows the deprecated `offset` may skip (Postgres reads every
/// skipped row: an unbounded offset would let one request scan a table).
pub const MAX_OFFSET: i64 = 10_000;

/// Length of a cursor's text (8 bytes of time, 16 of id, in hex).
pub const CURSOR_LEN: usize = 48;

/// The latest time a cursor may name, in microseconds since 1970 (in the
/// year 9886): the largest value whose first byte is 0x03 and second at
/// most 0x7f, so [`CURSOR_PATTERN`] states the rule exactly. Rows are made
/// today; Postgres takes up to 294276 AD.
const MAX_MICROS: i64 = 0x037F_FFFF_FFFF_FFFF;

/// What [`Cursor::decode`] accepts, as a regular expression (the OpenAPI
/// document's pattern).
pub const CURSOR_PATTERN: &str = "^0(?:[0-2][0-9a-fA-F]|3[0-7])[0-9a-fA-F]{45}$";

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
        // A forged cursor may name any time: only 1970 to [`MAX_MICROS`]
        // reads back.
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
        let far_future = format!("0380000000000000{}", &text[16..]);
        let latest = format!("037fffffffffffff{}", &text[16..]);
        assert!(Cursor::decode(&latest).is_some());
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
