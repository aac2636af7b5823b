//! `?cursor=`: any text is refused or read as a position that encodes back
//! to the same text (a client can forge nothing but a real position).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_domain::cursor::Cursor;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(cursor) = Cursor::decode(text) {
        assert_eq!(cursor.encode(), text.to_ascii_lowercase());
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }
});
