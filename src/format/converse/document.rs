//! `serde_json::Value` ⇄ `aws_smithy_types::Document` (the SDK's JSON type for tool inputs, schemas
//! and model-specific request fields).

use std::collections::HashMap;

use aws_smithy_types::{Document, Number};
use serde_json::Value;

/// Converts a JSON value to a smithy [`Document`]. Integers stay integers (`PosInt` / `NegInt`);
/// everything else numeric becomes `Float`.
pub fn json_to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => {
            let number = if let Some(u) = n.as_u64() {
                Number::PosInt(u)
            } else if let Some(i) = n.as_i64() {
                Number::NegInt(i)
            } else {
                Number::Float(n.as_f64().unwrap_or(0.0))
            };
            Document::Number(number)
        }
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(json_to_document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// Converts a smithy [`Document`] to a JSON value. A non-finite float (not representable in JSON)
/// becomes `null`.
pub fn document_to_json(doc: &Document) -> Value {
    match doc {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(document_to_json).collect()),
        Document::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), document_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_json() {
        let value = json!({
            "s": "x", "t": true, "n": null, "u": 7, "neg": -3, "f": 1.5,
            "arr": [1, {"deep": [false]}], "empty": {}
        });
        let doc = json_to_document(&value);
        assert_eq!(document_to_json(&doc), value);
        let Document::Object(map) = &doc else {
            panic!("not an object")
        };
        assert_eq!(map["u"], Document::Number(Number::PosInt(7)));
        assert_eq!(map["neg"], Document::Number(Number::NegInt(-3)));
        assert_eq!(map["f"], Document::Number(Number::Float(1.5)));
    }

    #[test]
    fn non_finite_float_is_null() {
        assert_eq!(
            document_to_json(&Document::Number(Number::Float(f64::NAN))),
            Value::Null
        );
    }
}
