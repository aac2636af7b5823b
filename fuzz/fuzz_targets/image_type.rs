//! An image part's declared type and first bytes (the input: a type of up
//! to 40 bytes, a NUL, then the bytes). Never panics; what is accepted is
//! one of the allow-listed raster types and its bytes carry that type's
//! signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_domain::image_type::{check_bytes, check_declared, sniff, ACCEPTED};

fuzz_target!(|data: &[u8]| {
    let split = data
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(data.len().min(40));
    let declared = String::from_utf8_lossy(&data[..split]);
    let bytes = data.get(split + 1..).unwrap_or_default();
    if let Ok(accepted) = check_declared(&declared) {
        assert!(ACCEPTED.contains(&accepted));
        if let Ok(kept) = check_bytes(accepted, bytes) {
            assert_eq!(kept, accepted);
            assert_eq!(sniff(bytes), Some(accepted));
        }
    }
});
