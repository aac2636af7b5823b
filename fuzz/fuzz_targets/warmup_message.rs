//! The protobuf warm-up message the worker reads off Kafka: any bytes are
//! refused or decoded; a decoded one re-encodes to a message that decodes
//! the same, and its template id is a real id or none.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_domain::warmup::{WarmupRequest, MAX_MESSAGE_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = WarmupRequest::from_bytes(data) else {
        return;
    };
    assert!(data.len() <= MAX_MESSAGE_BYTES);
    let again = WarmupRequest::from_bytes(&message.to_bytes());
    if let Ok(again) = again {
        assert_eq!(again, message);
    }
    if let Some(template) = message.template() {
        assert_eq!(template.to_string().len(), 36);
    }
    let _ = message.reason();
});
