//! Where a list page starts: after a keyset cursor (`created_at`, `id`,
//! newest first -- stable while rows are inserted), or at an offset (the
//! deprecated way, kept working).

use chrono::{DateTime, Utc};
use shared_domain::cursor::Cursor;
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
        Cursor { created_at, id }.encode()
    }

    /// Reads a cursor made by [`PageAt::cursor_after`].
    pub fn from_cursor(cursor: &str) -> Option<PageAt> {
        Cursor::decode(cursor).map(|c| PageAt::After {
            created_at: c.created_at,
            id: c.id,
        })
    }
}

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
