//! `Idempotency-Key`, `If-Match` and `X-Forwarded-For` as a client may
//! write them. The input is split at the first two NUL bytes into the
//! three values (the rest of the input picks the proxy count). Never
//! panics; an accepted key is within its bounds; the client address is the
//! peer or one of the header's entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_domain::headers::{
    etag_matches, forwarded_client, idempotency_key, if_match, IfMatch, MAX_IDEMPOTENCY_KEY_LEN,
    MAX_IF_MATCH_TAGS,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let key = parts.next().unwrap_or_default();
    let tags = parts.next().unwrap_or_default();
    let forwarded = parts.next().unwrap_or_default();

    if let Some(k) = idempotency_key(key) {
        assert!(!k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN);
        assert!(k.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
    }
    match if_match(tags) {
        Some(IfMatch::Tags(list)) => {
            assert!(!list.is_empty() && list.len() <= MAX_IF_MATCH_TAGS);
            assert!(etag_matches(tags, list[0]));
        }
        Some(IfMatch::Any) => assert!(etag_matches(tags, "\"anything\"")),
        None => assert!(!etag_matches(tags, "\"anything\"")),
    }
    let hops = data.len() % 4;
    let client = forwarded_client("peer", [forwarded], hops);
    assert!(client == "peer" || forwarded.contains(client.as_str()));
});
