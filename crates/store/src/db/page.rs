//! Where a list page starts: after a keyset cursor (`created_at`, `id`,
//! newest first -- stable while rows are inserted), or at an offset (the
//! deprecated way, kept working).

use chrono::{DateTime, Utc};
use shared_domain::cursor::Cursor;
use uuid::Uuid;

/// Where a page starts: after the cursor's row (if any), then `skip` rows
/// further (the deprecated `offset`; with a cursor it counts from there).
#[derive(Debug, Clone, PartialEq)]
pub struct PageAt {
    pub after: Option<Cursor>,
    pub skip: i64,
}

impl PageAt {
    pub const FIRST: PageAt = PageAt {
        after: None,
        skip: 0,
    };

    /// The opaque cursor of the page after the row (`created_at`, `id`).
    pub fn cursor_after(created_at: DateTime<Utc>, id: Uuid) -> String {
        Cursor { created_at, id }.encode()
    }

    /// The position after a cursor made by [`PageAt::cursor_after`].
    pub fn from_cursor(cursor: &str) -> Option<PageAt> {
        Cursor::decode(cursor).map(|c| PageAt {
            after: Some(c),
            skip: 0,
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
            Some(PageAt {
                after: Some(Cursor { created_at: at, id }),
                skip: 0
            })
        );
        let far_future = format!("ac08381e1f0f1d5f{}", &cursor[16..]);
        for bad in ["", "zz", "abc", &cursor[..46], "00", &far_future] {
            assert_eq!(PageAt::from_cursor(bad), None, "{bad}");
        }
    }
}
