//! `POST /templates`' metadata part and `PATCH /templates/{id}`'s body:
//! JSON into `NewTemplate` / `TemplatePatch`, then the checks in types
//! (`parse`). Never panics; what is accepted is within the layout's limits
//! and reads back the same after a trip through JSON (what the ledger
//! stores is what the next read parses).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_domain::template::{NewTemplate, TemplatePatch};
use shared_domain::valid::Layout;

fuzz_target!(|data: &[u8]| {
    if let Ok(new) = serde_json::from_slice::<NewTemplate>(data) {
        if let Ok(valid) = new.parse() {
            let layout = valid.layout.as_value();
            let text = serde_json::to_vec(layout).expect("a layout serializes");
            let again: serde_json::Value = serde_json::from_slice(&text).expect("and reads back");
            assert_eq!(
                Layout::parse(&again).expect("still valid").as_value(),
                layout
            );
        }
    }
    if let Ok(patch) = serde_json::from_slice::<TemplatePatch>(data) {
        if let Ok(valid) = patch.parse() {
            if let Some(layout) = valid.layout {
                assert!(layout.as_value().is_object());
            }
        }
    }
});
