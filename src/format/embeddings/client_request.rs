//! A client's `/v1/embeddings` body → the canonical [`EmbeddingsRequest`], checked strictly.

use serde_json::Value;

use crate::error::GatewayError;
use crate::model::EmbeddingsRequest;

/// The most inputs one request may carry (OpenAI's own limit).
const MAX_INPUTS: usize = 2048;

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message.into())
        .with_param(param.to_owned())
        .with_code("invalid_value")
}

/// Decodes and checks an embeddings body: `model` a non-empty id, `input` a non-empty string or a
/// list of 1–2048 non-empty strings, `dimensions` ≥ 1, `encoding_format` `float` or `base64`,
/// `user` a string. Every failure is a 400 naming its `param`.
pub fn decode_client_request(body: &[u8]) -> Result<EmbeddingsRequest, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw: serde_json::Map<String, Value> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid request body: {e}")))?;
    match raw.get("model") {
        Some(Value::String(m)) => crate::validate::model_id(m)?,
        Some(_) => return Err(invalid("model", "'model' must be a string.")),
        None => return Err(GatewayError::missing_field("model")),
    }
    match raw.get("input") {
        None => return Err(GatewayError::missing_field("input")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(invalid("input", "'input' cannot be an empty string."))
        }
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(invalid("input", "'input' cannot be an empty list."));
            }
            if items.len() > MAX_INPUTS {
                return Err(invalid(
                    "input",
                    format!("'input' can hold at most {MAX_INPUTS} items."),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.is_empty() => {}
                    Value::String(_) => {
                        return Err(invalid(
                            &format!("input[{i}]"),
                            format!("'input[{i}]' cannot be an empty string."),
                        ))
                    }
                    Value::Number(_) | Value::Array(_) => {
                        return Err(GatewayError::unsupported(
                            "input",
                            "Token-id inputs are not supported by this gateway; send the text.",
                        ))
                    }
                    _ => {
                        return Err(invalid(
                            &format!("input[{i}]"),
                            format!("'input[{i}]' must be a string."),
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                "input",
                "'input' must be a string or a list of strings.",
            ))
        }
    }
    match raw.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(v)
            if v.as_u64()
                .is_some_and(|d| (1..=u64::from(u32::MAX)).contains(&d)) => {}
        Some(_) => {
            return Err(invalid(
                "dimensions",
                "'dimensions' must be a positive integer.",
            ))
        }
    }
    match raw.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {}
        Some(_) => {
            return Err(invalid(
                "encoding_format",
                "'encoding_format' must be 'float' or 'base64'.",
            ))
        }
    }
    if raw
        .get("user")
        .is_some_and(|u| !u.is_string() && !u.is_null())
    {
        return Err(invalid("user", "'user' must be a string."));
    }
    serde_json::from_value(Value::Object(raw))
        .map_err(|e| GatewayError::invalid_request(format!("Invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(body: &str) -> Option<String> {
        decode_client_request(body.as_bytes())
            .unwrap_err()
            .param()
            .map(str::to_owned)
    }

    #[test]
    fn refuses_what_openai_refuses_naming_the_param() {
        assert_eq!(param(r#"{"input":"a"}"#).as_deref(), Some("model"));
        assert_eq!(param(r#"{"model":"m"}"#).as_deref(), Some("input"));
        assert_eq!(
            param(r#"{"model":"m","input":""}"#).as_deref(),
            Some("input")
        );
        assert_eq!(
            param(r#"{"model":"m","input":[]}"#).as_deref(),
            Some("input")
        );
        assert_eq!(
            param(r#"{"model":"m","input":["a",""]}"#).as_deref(),
            Some("input[1]")
        );
        assert_eq!(
            param(r#"{"model":"m","input":[[1,2]]}"#).as_deref(),
            Some("input")
        );
        assert_eq!(
            param(r#"{"model":"m","input":"a","dimensions":0}"#).as_deref(),
            Some("dimensions")
        );
        assert_eq!(
            param(r#"{"model":"m","input":"a","encoding_format":"int8"}"#).as_deref(),
            Some("encoding_format")
        );
        let ok = decode_client_request(
            br#"{"model":"m","input":["a"],"encoding_format":"base64","input_type":"search_query"}"#,
        )
        .unwrap();
        assert!(ok.wants_base64());
        assert_eq!(ok.extra["input_type"], "search_query");
    }
}
