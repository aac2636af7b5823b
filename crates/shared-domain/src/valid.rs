//! Client input, validated once, in types: each `parse` is the one place a
//! rule lives (lengths in characters, no NUL -- Postgres text and JSONB
//! refuse it -- layout depth and numbers a JSON reader may not read back,
//! beyond +-2^53, RFC 7493). The request DTOs' `parse` methods turn
//! them into their valid forms (`ValidTemplate`, `ValidPatch`,
//! `ValidCompany`), the only ones the store accepts, so a handler checks
//! nothing by hand and unchecked input cannot reach the database.

use serde_json::Value;

/// Why one field was refused; the API answers it as `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// Text: not blank if `required`, at most `max` characters, no NUL.
fn text(field: &'static str, value: &str, max: usize, required: bool) -> Result<(), Invalid> {
    if required && value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    if value.contains('\0') {
        return Err(invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// The JSON Schema `pattern` of a text field: no NUL characters (which
/// Postgres text cannot hold), as [`text`] checks.
pub const NO_NUL: &str = "^[^\\u0000]*$";

/// The same for a required text field: also not blank.
pub const NOT_BLANK: &str = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$";

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, required: $required:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(value: &str) -> Result<Self, Invalid> {
                text($field, value, Self::MAX_CHARS, $required)?;
                Ok(Self(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }
    };
}

text_type!(
    /// A template's name: 1 to 200 characters, not blank.
    TemplateName, "name", 200, required: true
);
text_type!(
    /// A template's category: up to 100 characters, may be empty.
    Category, "category", 100, required: false
);
text_type!(
    /// A company's name: 1 to 200 characters (parse a trimmed value).
    CompanyName, "name", 200, required: true
);

/// A template layout: a JSON object, at most [`Layout::MAX_DEPTH`] deep,
/// with no NUL in a key or string and every number within
/// +-[`Layout::MAX_NUMBER`].
#[derive(Debug, Clone, PartialEq)]
pub struct Layout(Value);

impl Layout {
    /// 2^53: exact in every JSON reader.
    pub const MAX_NUMBER: f64 = 9_007_199_254_740_992.0;
    pub const MAX_DEPTH: usize = 32;

    pub fn parse(value: &Value) -> Result<Self, Invalid> {
        if !value.is_object() {
            return Err(invalid("layout", "must be a JSON object"));
        }
        check_value(value, 0)?;
        Ok(Layout(value.clone()))
    }

    pub fn as_value(&self) -> &Value {
        &self.0
    }

    pub fn into_value(self) -> Value {
        self.0
    }
}

fn check_value(value: &Value, depth: usize) -> Result<(), Invalid> {
    if depth > Layout::MAX_DEPTH {
        return Err(invalid(
            "layout",
            format!("nests deeper than {} levels", Layout::MAX_DEPTH),
        ));
    }
    match value {
        Value::String(s) if s.contains('\0') => {
            Err(invalid("layout", "strings must not contain NUL characters"))
        }
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.abs() <= Layout::MAX_NUMBER => Ok(()),
            _ => Err(invalid(
                "layout",
                format!("numbers must be within +-{}", Layout::MAX_NUMBER),
            )),
        },
        Value::Array(items) => items.iter().try_for_each(|v| check_value(v, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.contains('\0') {
                return Err(invalid("layout", "keys must not contain NUL characters"));
            }
            check_value(v, depth + 1)
        }),
        _ => Ok(()),
    }
}

/// The most designs a company's plan may allow; guards against typos like 1e12.
pub const MAX_DESIGN_LIMIT: i32 = 1_000_000;

/// A plan's design limit: 0 to [`MAX_DESIGN_LIMIT`] (guards against typos
/// like 1e12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesignLimit(i32);

impl DesignLimit {
    pub fn parse(value: i32) -> Result<Self, Invalid> {
        if !(0..=MAX_DESIGN_LIMIT).contains(&value) {
            return Err(invalid(
                "design_limit",
                format!("must be between 0 and {MAX_DESIGN_LIMIT}"),
            ));
        }
        Ok(DesignLimit(value))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// A list page's size: 1 to [`PageLimit::MAX`], [`PageLimit::DEFAULT`] when
/// not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(i64);

impl PageLimit {
    pub const MAX: i64 = 100;
    pub const DEFAULT: i64 = 50;
    /// A template page ends early once its templates' layouts (as JSON
    /// text) and images ([`PageLimit::IMAGE_ENTRY_BYTES`] each) reach this
    /// many bytes; its first template is always listed. Public
    /// templates are listed to every company, so this keeps one tenant's
    /// big layouts from making every other tenant's pages big.
    pub const MAX_LAYOUT_BYTES: i64 = 1 << 20;
    /// What one image adds to a template's size in a page, counted against
    /// [`PageLimit::MAX_LAYOUT_BYTES`] with its layout: about one image's
    /// JSON (key, type, size, position). A template of 200 images and an
    /// empty layout is then 32 KB, not nothing.
    pub const IMAGE_ENTRY_BYTES: i64 = 160;

    pub fn parse(value: Option<i64>) -> Result<Self, Invalid> {
        match value {
            None => Ok(PageLimit(Self::DEFAULT)),
            Some(n) if (1..=Self::MAX).contains(&n) => Ok(PageLimit(n)),
            Some(_) => Err(invalid("limit", format!("must be 1 to {}", Self::MAX))),
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Regression (fuzz/template_json): a number that takes the float
    /// parser's slow path reads back as itself after a trip through JSON
    /// text, as every layout does through Postgres.
    #[test]
    fn layout_numbers_read_back_exactly() {
        let text = br#"{"n": 90079007119.254740993, "m": 0.1, "k": 1e300}"#;
        let first: Value = serde_json::from_slice(text).unwrap();
        let layout = Layout::parse(&first).unwrap_err();
        assert!(
            layout.to_string().contains("numbers"),
            "1e300 is out of range"
        );
        let text = br#"{"n": 90079007119.254740993, "m": 0.1}"#;
        let first: Value = serde_json::from_slice(text).unwrap();
        let again: Value = serde_json::from_slice(&serde_json::to_vec(&first).unwrap()).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn what_postgres_or_readers_refuse_is_invalid() {
        assert!(Layout::parse(&json!({"x": 1.0e300})).is_err());
        assert!(Layout::parse(&json!({"x": -1.7976931348623157e308})).is_err());
        assert!(Layout::parse(&json!({"x": "a\u{0}b"})).is_err());
        assert!(Layout::parse(&json!({"a\u{0}": 1})).is_err());
        assert!(Layout::parse(&json!([1])).is_err());
        assert!(
            Layout::parse(&json!({"x": [1, 2.5, {"y": "ok"}], "w": 9007199254740992u64})).is_ok()
        );
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "d": deep });
        }
        assert!(Layout::parse(&deep).is_err());
        assert!(TemplateName::parse("a\u{0}").is_err());
        assert!(TemplateName::parse(" ").is_err());
        assert_eq!(TemplateName::parse("ok").unwrap().as_str(), "ok");
        assert!(Category::parse("").is_ok());
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        // 200 two-byte characters: 400 bytes, still a valid name.
        let name = "é".repeat(200);
        assert!(TemplateName::parse(&name).is_ok());
        assert!(CompanyName::parse(&name).is_ok());
        assert!(CompanyName::parse(&"é".repeat(201)).is_err());
        let err = Category::parse(&"x".repeat(101)).unwrap_err();
        assert_eq!(err.to_string(), "`category` must be at most 100 characters");
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        assert!(DesignLimit::parse(-1).is_err());
        assert_eq!(
            DesignLimit::parse(MAX_DESIGN_LIMIT).unwrap().get(),
            MAX_DESIGN_LIMIT
        );
        assert!(DesignLimit::parse(MAX_DESIGN_LIMIT + 1).is_err());
        assert_eq!(PageLimit::parse(None).unwrap().get(), PageLimit::DEFAULT);
        assert!(PageLimit::parse(Some(0)).is_err());
        assert!(PageLimit::parse(Some(101)).is_err());
        assert_eq!(PageLimit::parse(Some(100)).unwrap().get(), 100);
    }
}
