//! The image types a template may hold: raster formats only, recognised by
//! their magic bytes. A declared `Content-Type` is a claim, not a fact: an
//! SVG (or an HTML page labelled `image/png`) would be served from the
//! bucket's origin as active content through presigned URLs, so an image is
//! kept only when its first bytes are one of these formats and its declared
//! type names the same one.

/// The accepted types, as stored and served.
pub const ACCEPTED: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Bytes needed to recognise every accepted format.
pub const SNIFF_BYTES: usize = 12;

/// The accepted type whose signature `head` (an image's first bytes) starts
/// with, if any.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Why an image part is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The declared type is not one of [`ACCEPTED`].
    Declared(String),
    /// The bytes are no accepted format.
    Unrecognised,
    /// The bytes are another accepted format than the declared one.
    Mismatch {
        declared: String,
        found: &'static str,
    },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accepted = ACCEPTED.join(", ");
        match self {
            Refused::Declared(t) => write!(f, "type `{t}` is not accepted (accepted: {accepted})"),
            Refused::Unrecognised => {
                write!(f, "the bytes are not an accepted image format ({accepted})")
            }
            Refused::Mismatch { declared, found } => {
                write!(f, "declared `{declared}` but the bytes are `{found}`")
            }
        }
    }
}

/// Checks an image's declared type (its media type, lower-cased, without
/// parameters) against the allow-list.
pub fn check_declared(declared: &str) -> Result<&'static str, Refused> {
    ACCEPTED
        .iter()
        .find(|t| t.eq_ignore_ascii_case(declared))
        .copied()
        .ok_or_else(|| Refused::Declared(declared.to_string()))
}

/// Checks an image's first bytes against its (accepted) declared type.
pub fn check_bytes(declared: &'static str, head: &[u8]) -> Result<&'static str, Refused> {
    match sniff(head) {
        Some(found) if found == declared => Ok(found),
        Some(found) => Err(Refused::Mismatch {
            declared: declared.to_string(),
            found,
        }),
        None => Err(Refused::Unrecognised),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raster_signatures_are_recognised_and_active_content_is_not() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Some("image/jpeg")
        );
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0AVI LIST"), None);
        assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\">"), None);
        assert_eq!(sniff(b"<html><script>"), None);
        assert_eq!(sniff(b"\x89PN"), None, "a truncated signature");
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn the_declared_type_must_be_accepted_and_match_the_bytes() {
        assert_eq!(check_declared("IMAGE/PNG"), Ok("image/png"));
        assert!(matches!(
            check_declared("image/svg+xml"),
            Err(Refused::Declared(_))
        ));
        assert!(matches!(
            check_declared("text/html"),
            Err(Refused::Declared(_))
        ));
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\r";
        assert_eq!(check_bytes("image/png", png), Ok("image/png"));
        assert_eq!(
            check_bytes("image/jpeg", png),
            Err(Refused::Mismatch {
                declared: "image/jpeg".into(),
                found: "image/png"
            })
        );
        assert_eq!(
            check_bytes("image/png", b"<svg/>"),
            Err(Refused::Unrecognised)
        );
    }
}
