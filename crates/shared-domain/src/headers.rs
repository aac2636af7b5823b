//! The request headers a client writes, read as plain text: no HTTP types,
//! so the same functions serve the API and the fuzz targets
//! (`fuzz/fuzz_targets/headers.rs`).
//!
//! - [`idempotency_key`]: `Idempotency-Key`, 1 to [`MAX_IDEMPOTENCY_KEY_LEN`]
//!   visible ASCII characters.
//! - [`etag_matches`]: `If-Match` against the current entity tag.
//! - [`forwarded_client`]: the client address behind trusted proxies, from
//!   `X-Forwarded-For`.

/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The most entity tags one `If-Match` may list (more is a 400: a list is
/// compared tag by tag, and a client has no reason to send many).
pub const MAX_IF_MATCH_TAGS: usize = 16;

/// An `Idempotency-Key` value, trimmed, if valid: 1 to
/// [`MAX_IDEMPOTENCY_KEY_LEN`] visible ASCII characters (spaces inside allowed).
pub fn idempotency_key(raw: &str) -> Option<&str> {
    let key = raw.trim();
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    valid.then_some(key)
}

/// A parsed `If-Match`: `*`, or up to [`MAX_IF_MATCH_TAGS`] entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch<'a> {
    Any,
    Tags(Vec<&'a str>),
}

/// Reads an `If-Match` value; `None` when it lists no tag or too many.
pub fn if_match(raw: &str) -> Option<IfMatch<'_>> {
    if raw.trim() == "*" {
        return Some(IfMatch::Any);
    }
    let tags: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .take(MAX_IF_MATCH_TAGS + 1)
        .collect();
    (!tags.is_empty() && tags.len() <= MAX_IF_MATCH_TAGS).then_some(IfMatch::Tags(tags))
}

/// `If-Match: *` or a list of entity tags, one of which is `current`
/// (strong comparison, RFC 9110 section 13.1.1). A value [`if_match`]
/// refuses matches nothing.
pub fn etag_matches(raw: &str, current: &str) -> bool {
    match if_match(raw) {
        Some(IfMatch::Any) => true,
        Some(IfMatch::Tags(tags)) => tags.contains(&current),
        None => false,
    }
}

/// The client address: the `X-Forwarded-For` entry the outermost of
/// `hops` trusted proxies appended (entries further left are the client's
/// own say), or `peer` when `hops` is 0 or the header has fewer entries
/// than proxies (the request did not come through them). `values` are the
/// header's occurrences in order.
pub fn forwarded_client<'a>(
    peer: &str,
    values: impl IntoIterator<Item = &'a str>,
    hops: usize,
) -> String {
    if hops == 0 {
        return peer.to_string();
    }
    let entries: Vec<&str> = values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|hop| strip_port(hop.trim()))
        .filter(|hop| !hop.is_empty())
        .collect();
    match entries.len().checked_sub(hops) {
        Some(i) => entries[i].to_string(),
        None => peer.to_string(),
    }
}

/// An address without its port: `10.0.0.1:5000` and `[::1]:5000` lose it,
/// a bare IPv6 address keeps all of itself.
pub fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(idempotency_key("  order 42 "), Some("order 42"));
        assert_eq!(idempotency_key(""), None);
        assert_eq!(idempotency_key("   "), None);
        assert_eq!(idempotency_key("tab\there"), None);
        assert_eq!(idempotency_key("é"), None);
        assert!(idempotency_key(&"k".repeat(255)).is_some());
        assert_eq!(idempotency_key(&"k".repeat(256)), None);
    }

    #[test]
    fn if_match_compares_strongly_and_bounds_its_list() {
        assert!(etag_matches("*", "\"a\""));
        assert!(etag_matches("\"x\", \"a\"", "\"a\""));
        assert!(!etag_matches("W/\"a\"", "\"a\""));
        assert!(!etag_matches("", "\"a\""));
        assert!(!etag_matches(" , ,", "\"a\""));
        let many = vec!["\"a\""; MAX_IF_MATCH_TAGS + 1].join(",");
        assert_eq!(if_match(&many), None);
        assert!(!etag_matches(&many, "\"a\""));
    }

    #[test]
    fn the_client_address_is_the_one_the_outermost_trusted_proxy_saw() {
        let xff = ["1.2.3.4, 203.0.113.7"];
        assert_eq!(forwarded_client("10.0.0.9", xff, 0), "10.0.0.9");
        assert_eq!(forwarded_client("10.0.0.9", xff, 1), "203.0.113.7");
        assert_eq!(forwarded_client("10.0.0.9", xff, 2), "1.2.3.4");
        assert_eq!(forwarded_client("10.0.0.9", xff, 3), "10.0.0.9");
        assert_eq!(forwarded_client("p", ["a", "b:80"], 1), "b");
        assert_eq!(strip_port("10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(strip_port("[::1]:5000"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }
}
