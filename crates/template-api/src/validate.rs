//! Checks of client-supplied text and JSON that the types alone do not make:
//! lengths, NUL characters (Postgres text and JSONB refuse them), and
//! numbers a JSON reader may not read back (beyond +-2^53, RFC 7493).

use serde_json::Value;
use shared_domain::error::ErrorCode;

use crate::error::ApiError;

/// The largest magnitude of a layout number (2^53: exact in every JSON reader).
pub const MAX_LAYOUT_NUMBER: f64 = 9_007_199_254_740_992.0;
/// The deepest nesting of a layout.
pub const MAX_LAYOUT_DEPTH: usize = 32;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// A text field: not blank if `required`, at most `max` characters, no NUL.
pub fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(invalid(format!("`{field}` must not be empty")));
    }
    if value.chars().count() > max {
        return Err(invalid(format!(
            "`{field}` must be at most {max} characters"
        )));
    }
    if value.contains('\0') {
        return Err(invalid(format!(
            "`{field}` must not contain NUL characters"
        )));
    }
    Ok(())
}

/// A layout: a JSON object, at most [`MAX_LAYOUT_DEPTH`] deep, with no NUL
/// in a key or string and every number within +-[`MAX_LAYOUT_NUMBER`].
pub fn check_layout(layout: &Value) -> Result<(), ApiError> {
    if !layout.is_object() {
        return Err(invalid("`layout` must be a JSON object"));
    }
    check_value(layout, 0)
}

fn check_value(value: &Value, depth: usize) -> Result<(), ApiError> {
    if depth > MAX_LAYOUT_DEPTH {
        return Err(invalid(format!(
            "`layout` nests deeper than {MAX_LAYOUT_DEPTH} levels"
        )));
    }
    match value {
        Value::String(s) if s.contains('\0') => {
            Err(invalid("`layout` strings must not contain NUL characters"))
        }
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.abs() <= MAX_LAYOUT_NUMBER => Ok(()),
            _ => Err(invalid(format!(
                "`layout` numbers must be within +-{MAX_LAYOUT_NUMBER}"
            ))),
        },
        Value::Array(items) => items.iter().try_for_each(|v| check_value(v, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.contains('\0') {
                return Err(invalid("`layout` keys must not contain NUL characters"));
            }
            check_value(v, depth + 1)
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn what_postgres_or_readers_refuse_is_a_400() {
        assert!(check_layout(&json!({"x": 1.0e300})).is_err());
        assert!(check_layout(&json!({"x": -1.7976931348623157e308})).is_err());
        assert!(check_layout(&json!({"x": "a\u{0}b"})).is_err());
        assert!(check_layout(&json!({"a\u{0}": 1})).is_err());
        assert!(check_layout(&json!([1])).is_err());
        assert!(
            check_layout(&json!({"x": [1, 2.5, {"y": "ok"}], "w": 9007199254740992u64})).is_ok()
        );
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "d": deep });
        }
        assert!(check_layout(&deep).is_err());
        assert!(check_text("name", "a\u{0}", 10, true).is_err());
        assert!(check_text("name", " ", 10, true).is_err());
        assert!(check_text("name", "ok", 10, true).is_ok());
    }
}
