//! [`BodyHead`]: the top level of a request body as detection reads it, in one pass that builds no
//! JSON tree.
//!
//! Detection needs only a few facts — which marker members are present, the model, `stream` — so
//! the body is read with a typed visitor: marker keys are recorded, `model`/`model_id`/`modelId`
//! and `stream` are kept when they are a string / a boolean, and every other value is skipped
//! without being stored. The same pass enforces the body's structural budget:
//!
//! - **values**: every JSON value and object key counts one; past the limit the body is refused
//!   (413 `request_too_complex`) before anything is allocated for it. A generic tree of `[0,0,…]`
//!   costs 16–32 bytes per 2-byte element and a small object several hundred bytes, so this count,
//!   not the byte size, is what bounds the memory of the typed decoding that follows;
//! - **depth**: serde_json's recursion limit (128 levels), so deep nesting is a 400, never a stack
//!   overflow.
//!
//! ```
//! use open_bedrock_server::detect::BodyHead;
//!
//! let head = BodyHead::parse(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#).unwrap();
//! assert!(head.has("messages") && !head.has("anthropic_version"));
//! assert_eq!((head.model(), head.stream()), (Some("gpt-4o"), Some(true)));
//! assert_eq!(head.values(), 12); // every value and every key
//!
//! let bomb = format!("{{\"model\":\"m\",\"messages\":[],\"x\":[{}0]}}", "0,".repeat(100));
//! let e = BodyHead::parse_with_limit(bomb.as_bytes(), 64).unwrap_err();
//! assert_eq!((e.status().as_u16(), e.code()), (413, Some("request_too_complex")));
//! ```

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// The default value budget of one body: room for a conversation of tens of thousands of turns,
/// far below what would let a body of tiny values grow a tree many times its size.
pub const DEFAULT_MAX_JSON_VALUES: usize = 262_144;

/// The top-level members whose presence [`BodyHead::has`] answers for.
const MARKERS: [&str; 8] = [
    "anthropic_version",
    "inputText",
    "model",
    "model_id",
    "modelId",
    "messages",
    "stream",
    "system",
];

/// The top level of a JSON object body: marker members, model and `stream` (see the module
/// docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BodyHead {
    present: u16,
    model: Option<String>,
    model_rank: u8,
    stream: Option<bool>,
    max_tokens: Option<u64>,
    values: usize,
}

/// Where a body names its model, in order of precedence.
const MODEL_KEYS: [&str; 3] = ["model", "model_id", "modelId"];

impl BodyHead {
    /// Reads a body under [`DEFAULT_MAX_JSON_VALUES`].
    pub fn parse(bytes: &[u8]) -> Result<BodyHead, GatewayError> {
        BodyHead::parse_with_limit(bytes, DEFAULT_MAX_JSON_VALUES)
    }

    /// Reads a body that must be one JSON object of at most `max_values` values: 400 for an empty
    /// body, invalid JSON, another JSON type or nesting deeper than 128; 413 past `max_values`.
    pub fn parse_with_limit(bytes: &[u8], max_values: usize) -> Result<BodyHead, GatewayError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(GatewayError::invalid_request(
                "The request body is empty; send a JSON object.",
            ));
        }
        let budget = Budget {
            left: Cell::new(max_values),
            exceeded: Cell::new(false),
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let head = TopLevel { budget: &budget }
            .deserialize(&mut de)
            .and_then(|head| de.end().map(|()| head));
        match head {
            Ok(mut head) => {
                head.values = max_values - budget.left.get();
                Ok(head)
            }
            Err(_) if budget.exceeded.get() => Err(too_complex(max_values)),
            Err(e) => Err(GatewayError::invalid_request(format!(
                "We could not parse the JSON body of your request ({e}). The body must be a JSON object."
            ))
            .with_code("invalid_json")),
        }
    }

    /// The head of an already parsed object (for classifiers tested without bytes).
    pub fn of(object: &Map<String, Value>) -> BodyHead {
        let mut head = BodyHead::default();
        for (key, value) in object {
            head.record(key, || match value {
                Value::String(s) => Field::Str(s.clone()),
                Value::Bool(b) => Field::Bool(*b),
                Value::Number(n) => n.as_u64().map_or(Field::Other, Field::U64),
                _ => Field::Other,
            });
        }
        head
    }

    /// Whether the top level has `key` (any value, `null` included). Answers for the marker keys
    /// `anthropic_version`, `inputText`, `model`, `model_id`, `modelId`, `messages`, `stream` and
    /// `system`; `false` for any other key.
    pub fn has(&self, key: &str) -> bool {
        MARKERS
            .iter()
            .position(|m| *m == key)
            .is_some_and(|i| self.present & (1 << i) != 0)
    }

    /// The model the body names: the first string of `model`, `model_id`, `modelId` in that
    /// order.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// `stream` when it is a boolean.
    pub fn stream(&self) -> Option<bool> {
        self.stream
    }

    /// The output-token cap the body's top level names (`max_completion_tokens` or the Responses
    /// API's `max_output_tokens`, else `max_tokens`), when it is a whole number: what a budget's estimate at admission reads.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    /// The number of JSON values (object keys included) in the body.
    pub fn values(&self) -> usize {
        self.values
    }

    fn record(&mut self, key: &str, value: impl FnOnce() -> Field) {
        if let "max_tokens" | "max_completion_tokens" | "max_output_tokens" = key {
            if let Field::U64(n) = value() {
                // `max_completion_tokens` wins (OpenAI's newer name); `max_output_tokens` is the
                // Responses API's.
                if key != "max_tokens" || self.max_tokens.is_none() {
                    self.max_tokens = Some(n);
                }
            }
            return;
        }
        let Some(i) = MARKERS.iter().position(|m| *m == key) else {
            return;
        };
        if self.present & (1 << i) != 0 {
            return;
        }
        self.present |= 1 << i;
        match (key, value()) {
            ("model" | "model_id" | "modelId", Field::Str(s)) => {
                // `model` wins over `model_id` over `modelId`, whatever the order of the members.
                let rank = MODEL_KEYS.iter().position(|m| *m == key).unwrap_or(0) as u8;
                if self.model.is_none() || rank < self.model_rank {
                    self.model = Some(s);
                    self.model_rank = rank;
                }
            }
            ("stream", Field::Bool(b)) => self.stream = Some(b),
            _ => {}
        }
    }
}

fn too_complex(max_values: usize) -> GatewayError {
    GatewayError::invalid_request(format!(
        "The request body has more than {max_values} JSON values; send fewer, larger values."
    ))
    .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
    .with_code("request_too_complex")
}

enum Field {
    Str(String),
    Bool(bool),
    U64(u64),
    Other,
}

struct Budget {
    left: Cell<usize>,
    exceeded: Cell<bool>,
}

impl Budget {
    fn take<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("too many JSON values"))
            }
        }
    }
}

/// The top-level object.
struct TopLevel<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = BodyHead;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<BodyHead, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = BodyHead;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyHead, A::Error> {
        self.budget.take()?;
        let mut head = BodyHead::default();
        while let Some(key) = map.next_key::<KeyName<'de>>()? {
            self.budget.take()?;
            let field = map.next_value_seed(TopValue {
                budget: self.budget,
                keep: key.is_kept(),
            })?;
            head.record(key.as_str(), || field);
        }
        Ok(head)
    }
}

/// A top-level key: borrowed when it has no escapes, else owned.
enum KeyName<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl KeyName<'_> {
    fn as_str(&self) -> &str {
        match self {
            KeyName::Borrowed(s) => s,
            KeyName::Owned(s) => s,
        }
    }

    fn is_kept(&self) -> bool {
        matches!(
            self.as_str(),
            "model"
                | "model_id"
                | "modelId"
                | "stream"
                | "max_tokens"
                | "max_completion_tokens"
                | "max_output_tokens"
        )
    }
}

impl<'de> serde::Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyName<'de>, E> {
                Ok(KeyName::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyName<'de>, E> {
                // Only marker keys matter; any other escaped key is not kept.
                Ok(KeyName::Owned(if MARKERS.contains(&v) {
                    v.to_owned()
                } else {
                    String::new()
                }))
            }
        }
        d.deserialize_str(V)
    }
}

/// A top-level value: kept when it is the model or `stream`, else counted and skipped.
struct TopValue<'b> {
    budget: &'b Budget,
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for TopValue<'_> {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        if self.keep {
            d.deserialize_any(self)
        } else {
            Skip {
                budget: self.budget,
            }
            .deserialize(d)
            .map(|()| Field::Other)
        }
    }
}

impl<'de> Visitor<'de> for TopValue<'_> {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
        self.budget.take()?;
        Ok(Field::Str(v.to_owned()))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Field, E> {
        self.budget.take()?;
        Ok(Field::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Field, E> {
        self.budget.take().map(|()| Field::Other)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Field, E> {
        self.budget.take().map(|()| Field::U64(v))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Field, E> {
        self.budget.take().map(|()| Field::Other)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Field, E> {
        self.budget.take().map(|()| Field::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field, A::Error> {
        Skip {
            budget: self.budget,
        }
        .visit_seq(seq)
        .map(|()| Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field, A::Error> {
        Skip {
            budget: self.budget,
        }
        .visit_map(map)
        .map(|()| Field::Other)
    }
}

/// Any value, counted against the budget and not stored.
#[derive(Clone, Copy)]
struct Skip<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.budget.take()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.budget.take()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.budget.take()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.budget.take()
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.budget.take()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.budget.take()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.budget.take()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.budget.take()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            self.budget.take()?;
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_markers_model_and_stream_without_a_tree() {
        let head = BodyHead::parse(
            br#"{"modelId":"c","model_id":"b","anthropic_version":"v","inputText":"x","stream":"yes","nested":{"model":"no"}}"#,
        )
        .unwrap();
        assert!(head.has("anthropic_version") && head.has("inputText") && head.has("modelId"));
        assert!(!head.has("messages") && !head.has("nested"));
        assert_eq!(head.model(), Some("b"), "model_id outranks modelId");
        assert_eq!(head.stream(), None, "a string is not a boolean");
        let head = BodyHead::parse(br#"{"modelId":"c","model":"a"}"#).unwrap();
        assert_eq!(head.model(), Some("a"));
        let head = BodyHead::parse(br#"{"model":5,"model_id":"b"}"#).unwrap();
        assert_eq!(head.model(), Some("b"));
        let head = BodyHead::parse(br#"{"m\u006fdel":"esc","messages":[]}"#).unwrap();
        assert_eq!(head.model(), Some("esc"));
    }

    #[test]
    fn refuses_what_is_not_one_object_within_the_budget() {
        for bad in [
            &b""[..],
            b"  ",
            b"[1]",
            b"\"s\"",
            b"{",
            b"{} {}",
            b"{\"a\":tru}",
        ] {
            let e = BodyHead::parse(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        let e = BodyHead::parse(deep.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400);
        let wide = format!("{{\"a\":[{}0]}}", "0,".repeat(1000));
        // The object, its key, the array and its 1,001 elements.
        assert_eq!(BodyHead::parse(wide.as_bytes()).unwrap().values(), 1004);
        assert!(BodyHead::parse_with_limit(wide.as_bytes(), 1004).is_ok());
        let e = BodyHead::parse_with_limit(wide.as_bytes(), 1003).unwrap_err();
        assert_eq!(e.status(), 413);
        let keys = format!(
            "{{{}\"z\":0}}",
            (0..600)
                .map(|i| format!("\"k{i}\":{{}},"))
                .collect::<String>()
        );
        let e = BodyHead::parse_with_limit(keys.as_bytes(), 1000).unwrap_err();
        assert_eq!(e.code(), Some("request_too_complex"));
    }

    #[test]
    fn of_an_object_agrees_with_parse() {
        let text = r#"{"model":"m","messages":[],"stream":false,"system":"s"}"#;
        let object: Map<String, Value> = serde_json::from_str(text).unwrap();
        let mut parsed = BodyHead::parse(text.as_bytes()).unwrap();
        parsed.values = 0;
        assert_eq!(BodyHead::of(&object), parsed);
    }
}
