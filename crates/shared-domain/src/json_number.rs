//! What the request documents say about JSON numbers, and the readers that
//! make the API agree: an integer field takes any JSON number whose value
//! is an integer in range (`45607.0` is the integer 45607 to JSON Schema,
//! as to every JSON reader that is not serde's strict one), and a layout's
//! schema states its number bound and its NUL rule at every depth.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

use crate::valid::Layout;

/// Reads an integer field from any JSON number with an integral value in
/// `T`'s range (`serde(deserialize_with = "json_number::integer")`).
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    to_integer(&number)
        .ok_or_else(|| serde::de::Error::custom(format!("`{number}` is not an integer in range")))
}

/// [`integer`] for an optional field.
pub fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let number = Option::<serde_json::Number>::deserialize(deserializer)?;
    number
        .map(|n| {
            to_integer(&n).ok_or_else(|| {
                serde::de::Error::custom(format!("`{n}` is not an integer in range"))
            })
        })
        .transpose()
}

fn to_integer<T: TryFrom<i64>>(number: &serde_json::Number) -> Option<T> {
    let value = match (number.as_i64(), number.as_f64()) {
        (Some(i), _) => i,
        // Exact below 2^53, where every integral f64 is an integer.
        (None, Some(f)) if f.fract() == 0.0 && f.abs() <= Layout::MAX_NUMBER => f as i64,
        _ => return None,
    };
    T::try_from(value).ok()
}

/// The schema of a layout: a JSON object whose keys and strings hold no
/// NUL and whose numbers are within +-2^53, at every depth
/// ([`Layout::parse`]; its depth bound, 32, is stated in prose).
pub struct LayoutSchema;

/// Any value inside a layout (see [`LayoutSchema`]).
pub struct LayoutValue;

use crate::valid::NO_NUL;

impl JsonSchema for LayoutValue {
    fn schema_name() -> Cow<'static, str> {
        "LayoutValue".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<LayoutValue>();
        let max = Layout::MAX_NUMBER;
        json_schema!({
            "description": "a value inside a layout: keys and strings without NUL, numbers within +-2^53",
            "anyOf": [
                {"type": "null"},
                {"type": "boolean"},
                {"type": "string", "pattern": NO_NUL},
                {"type": "number", "minimum": -max, "maximum": max},
                {"type": "array", "items": value},
                {"type": "object", "additionalProperties": value, "propertyNames": {"pattern": NO_NUL}}
            ]
        })
    }
}

impl JsonSchema for LayoutSchema {
    fn schema_name() -> Cow<'static, str> {
        "Layout".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<LayoutValue>();
        json_schema!({
            "description": "the template's layout: a JSON object at most 32 levels deep, keys and strings without NUL, numbers within +-2^53",
            "type": "object",
            "additionalProperties": value,
            "propertyNames": {"pattern": NO_NUL}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Limit {
        #[serde(deserialize_with = "integer")]
        n: i32,
        #[serde(default, deserialize_with = "optional_integer")]
        grace: Option<u64>,
    }

    #[test]
    fn integral_numbers_are_integers_and_others_are_refused() {
        let read = |text: &str| serde_json::from_str::<Limit>(text).map(|l| (l.n, l.grace));
        assert_eq!(read(r#"{"n": 45607.0}"#).unwrap(), (45607, None));
        assert_eq!(
            read(r#"{"n": 7, "grace": 241726.0}"#).unwrap(),
            (7, Some(241726))
        );
        assert_eq!(read(r#"{"n": 7, "grace": null}"#).unwrap(), (7, None));
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": 3000000000}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "7"}"#,
            r#"{"n": 7, "grace": -1}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
