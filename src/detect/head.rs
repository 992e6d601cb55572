//! [`BodyHead`]: the top level of a request body as detection reads it, in one pass that builds no
//! JSON tree.
//!
//! Detection needs only a few facts — which marker members are present, the model, `stream`, the
//! output cap — so the body is read by a strict byte scan (`Scan`: JSON's whole grammar, no tree,
//! no string decoded): marker keys are recorded, `model`/`model_id`/`modelId` and `stream` are
//! kept when they are a string / a boolean, the output caps (top-level, and Titan's and
//! Converse's inside their config objects) when they are whole numbers, and every other value is
//! checked and skipped without being stored. The typed decode that follows is then the request's
//! one parse (issue 18; a chat body detection reads in one walk skips this scan, see
//! [`crate::detect`]). A member repeated at the top level is read as serde_json's map keeps it,
//! the last occurrence: a native body is decoded that way, so a key's model allowlist is checked
//! against the model the request is then routed by. A test checks the scan against serde_json on thousands of mutated bodies: it
//! accepts what serde_json accepts, except numbers beyond `f64`'s range, which the decode refuses,
//! and the key `"$serde_json::private::RawValue"` anywhere, which it refuses (serde_json, built
//! with `raw_value`, reads an object with that key first, as a sorted map puts it, as the JSON
//! text in its string: a value other than the one detection saw, outside the value budget). The
//! same pass enforces the body's structural budget:
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

use serde_json::{Map, Value};

use crate::format::scan::{
    has_control, is_printable_ascii, quote_or_backslash, unescape, unicode_escape, RAW_VALUE_KEY,
};

use crate::error::GatewayError;
use crate::format::InboundFormat;

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
    /// The string of each of [`MODEL_KEYS`], as its last occurrence has it (a member repeated
    /// in the body: the last one, as serde_json's map keeps it).
    models: [Option<String>; 3],
    stream: Option<bool>,
    /// The whole number of each of [`CAP_KEYS`], as its last occurrence has it.
    caps: [Option<u64>; 3],
    /// The whole number of each of [`NESTED_CAPS`]' inner member, as the last occurrence of its
    /// object has it.
    nested_caps: [Option<u64>; 2],
    values: usize,
}

/// Where a body names its model, in order of precedence.
const MODEL_KEYS: [&str; 3] = ["model", "model_id", "modelId"];

/// Where a body's top level caps its output tokens: OpenAI's newer name, the Responses API's, and
/// the older one (also Claude's). Which one a format reads: [`BodyHead::max_tokens`].
const CAP_KEYS: [&str; 3] = ["max_completion_tokens", "max_output_tokens", "max_tokens"];

/// Where a native Bedrock body caps its output tokens: a member of a top-level object (Titan's
/// `textGenerationConfig.maxTokenCount`, Converse's `inferenceConfig.maxTokens`).
const NESTED_CAPS: [(&str, &str); 2] = [
    ("textGenerationConfig", "maxTokenCount"),
    ("inferenceConfig", "maxTokens"),
];

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
        let mut scan = Scan {
            b: bytes,
            i: 0,
            left: max_values,
            depth: 0,
        };
        scan.ws();
        if scan.peek() != Some(b'{') {
            return Err(invalid_json(bytes, scan.i, "expected a JSON object"));
        }
        let head = scan.top().and_then(|head| {
            scan.ws();
            match scan.peek() {
                None => Ok(head),
                Some(_) => Err(Stop::Syntax(scan.i, "trailing characters")),
            }
        });
        match head {
            Ok(mut head) => {
                head.values = max_values - scan.left;
                Ok(head)
            }
            Err(Stop::TooComplex) => Err(too_complex(max_values)),
            Err(Stop::Syntax(at, what)) => Err(invalid_json(bytes, at, what)),
        }
    }

    /// The head of an already parsed object (for classifiers tested without bytes).
    pub fn of(object: &Map<String, Value>) -> BodyHead {
        fn field(value: &Value) -> Field {
            match value {
                Value::String(s) => Field::Str(s.clone()),
                Value::Bool(b) => Field::Bool(*b),
                Value::Number(n) => n.as_u64().map_or(Field::Other, Field::U64),
                _ => Field::Other,
            }
        }
        let mut head = BodyHead::default();
        for (key, value) in object {
            head.record(key, || field(value));
            if let Some((i, (_, inner))) = nested_cap(key) {
                head.nested_caps[i] = value
                    .as_object()
                    .and_then(|o| o.get(*inner))
                    .and_then(Value::as_u64);
            }
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
        self.models.iter().find_map(Option::as_deref)
    }

    /// `stream` when it is a boolean.
    pub fn stream(&self) -> Option<bool> {
        self.stream
    }

    /// The output-token cap a body of `format` names, read where that format's decode reads it,
    /// when it is a whole number: what a budget's estimate at admission charges. OpenAI chat:
    /// `max_completion_tokens`, else `max_tokens` (whatever their order in the body); the
    /// Responses API: `max_output_tokens`; Claude: `max_tokens`; Titan:
    /// `textGenerationConfig.maxTokenCount`; Converse: `inferenceConfig.maxTokens`; embeddings
    /// produce no output tokens (`Some(0)`). A member the format does not read caps nothing, so
    /// no body lowers its estimate below the cap its upstream is sent.
    pub fn max_tokens(&self, format: InboundFormat) -> Option<u64> {
        let [completion, output, tokens] = self.caps;
        match format {
            InboundFormat::OpenAi => completion.or(tokens),
            InboundFormat::Responses => output,
            InboundFormat::BedrockClaude => tokens,
            InboundFormat::BedrockTitan => self.nested_caps[0],
            InboundFormat::Converse => self.nested_caps[1],
            InboundFormat::Embeddings => Some(0),
        }
    }

    /// The number of JSON values (object keys included) in the body.
    pub fn values(&self) -> usize {
        self.values
    }

    /// One top-level member; `value` is asked for only by the members kept (the model keys,
    /// `stream`, the caps). A repeated member is read as serde_json's map keeps it: the last
    /// occurrence's value replaces the earlier one's (a value of another type clears it), so the
    /// model, `stream` and the cap are those of the body every later decode reads.
    fn record(&mut self, key: &str, value: impl FnOnce() -> Field) {
        if let Some(i) = CAP_KEYS.iter().position(|k| *k == key) {
            self.caps[i] = match value() {
                Field::U64(n) => Some(n),
                _ => None,
            };
            return;
        }
        let Some(i) = MARKERS.iter().position(|m| *m == key) else {
            return;
        };
        self.present |= 1 << i;
        if let Some(rank) = MODEL_KEYS.iter().position(|m| *m == key) {
            // `model` wins over `model_id` over `modelId`, whatever the order of the members.
            self.models[rank] = match value() {
                Field::Str(s) => Some(s),
                _ => None,
            };
        } else if key == "stream" {
            self.stream = match value() {
                Field::Bool(b) => Some(b),
                _ => None,
            };
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

/// Why the scan stopped.
enum Stop {
    /// Not JSON: what was expected, at this byte offset.
    Syntax(usize, &'static str),
    /// More values than the budget.
    TooComplex,
}

/// serde_json's recursion limit: nesting this deep is refused.
const MAX_DEPTH: usize = 128;

/// A strict JSON scan of the body (RFC 8259's grammar: strings with their escapes and no control
/// characters, numbers, the three literals, balanced containers), counting every value and key
/// against the budget and reading the top level's facts. Hand-written because serde_json
/// validates strings only while decoding them (every string unescaped and checked for UTF-8 once
/// here and again by the typed decode that follows), and its non-decoding path (`IgnoredAny`)
/// cannot count values. UTF-8 is checked where it can be broken: outside strings the grammar
/// admits ASCII only, and a string's text is checked run by run (`string`).
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    /// Values and keys the budget still allows.
    left: usize,
    depth: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// One more value or key against the budget.
    fn take(&mut self) -> Result<(), Stop> {
        self.left = self.left.checked_sub(1).ok_or(Stop::TooComplex)?;
        Ok(())
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), Stop> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(Stop::Syntax(self.i, what))
        }
    }

    /// A value at `self.i` (whitespace skipped before it by the caller).
    fn value(&mut self) -> Result<(), Stop> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                self.take()?;
                self.string().map(drop)
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                self.take()?;
                self.number().map(drop)
            }
            _ => Err(Stop::Syntax(self.i, "expected value")),
        }
    }

    fn enter(&mut self) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(Stop::Syntax(self.i, "recursion limit exceeded"));
        }
        self.take()
    }

    /// The body's top-level object at `self.i`: its facts.
    fn top(&mut self) -> Result<BodyHead, Stop> {
        let mut head = BodyHead::default();
        self.members(|scan, key| {
            let name = key_name(key);
            if let Some((i, (_, inner))) = nested_cap(&name) {
                head.nested_caps[i] = scan.nested_cap(inner)?;
                return Ok(());
            }
            let start = scan.i;
            scan.value()?;
            // Read only for a kept member (`record` asks for the value of those alone).
            head.record(&name, || field(&scan.b[start..scan.i]));
            Ok(())
        })?;
        Ok(head)
    }

    /// A top-level member's value that may be an object holding an output cap: the whole number
    /// its last `inner` member holds (`None` for another value, or without one).
    fn nested_cap(&mut self, inner: &str) -> Result<Option<u64>, Stop> {
        if self.peek() != Some(b'{') {
            self.value()?;
            return Ok(None);
        }
        let mut cap = None;
        self.members(|scan, key| {
            if !key_is(key, inner) {
                return scan.value();
            }
            let start = scan.i;
            scan.value()?;
            cap = match field(&scan.b[start..scan.i]) {
                Field::U64(n) => Some(n),
                _ => None,
            };
            Ok(())
        })?;
        Ok(cap)
    }

    /// An object at `self.i`, its values checked and skipped.
    fn object(&mut self) -> Result<(), Stop> {
        self.members(|scan, _| scan.value())
    }

    /// The members of the object at `self.i`: each key checked and counted, then handed as
    /// written (between its quotes) to `member`, which reads the value that follows the colon.
    fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a [u8]) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        if self.open(b'}')? {
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(Stop::Syntax(self.i, "expected a key"));
            }
            let key_at = self.i;
            self.take()?;
            let key = self.string()?;
            // Refused as any key: no later read of the body then builds a tree outside the value
            // budget or sees other members than detection did.
            if key_is(key, RAW_VALUE_KEY) {
                return Err(Stop::Syntax(
                    key_at,
                    "the reserved key `$serde_json::private::RawValue`",
                ));
            }
            self.ws();
            self.expect(b':', "expected `:`")?;
            self.ws();
            member(self, key)?;
            if self.next_or_close(b'}', "expected `,` or `}`")? {
                return Ok(());
            }
        }
    }

    fn array(&mut self) -> Result<(), Stop> {
        if self.open(b']')? {
            return Ok(());
        }
        loop {
            self.value()?;
            if self.next_or_close(b']', "expected `,` or `]`")? {
                return Ok(());
            }
        }
    }

    /// Enters the container whose opening bracket is at `self.i`: whether it is empty (`close`
    /// follows at once, and it is left again).
    fn open(&mut self, close: u8) -> Result<bool, Stop> {
        self.enter()?;
        self.i += 1;
        self.ws();
        Ok(self.close(close))
    }

    /// After a member or an element: `,` (more follow) or `close` (the container ends and is
    /// left). Whether it ended.
    fn next_or_close(&mut self, close: u8, what: &'static str) -> Result<bool, Stop> {
        self.ws();
        if self.close(close) {
            return Ok(true);
        }
        self.expect(b',', what)?;
        self.ws();
        Ok(false)
    }

    /// Leaves the container when `close` is next.
    fn close(&mut self, close: u8) -> bool {
        let closes = self.peek() == Some(close);
        if closes {
            self.i += 1;
            self.depth -= 1;
        }
        closes
    }

    /// A string at `self.i` (its opening quote): the bytes between the quotes, escapes as
    /// written. Each run up to the next quote or backslash is found by `quote_or_backslash` (a
    /// word-wise look at its first 32 bytes, then `memchr2`'s vector search) and checked in
    /// blocks for printable ASCII; only a run with other bytes is looked at again (a control
    /// character is refused, anything else must be UTF-8). No byte-by-byte loop runs over plain
    /// text longer than a few bytes.
    fn string(&mut self) -> Result<&'a [u8], Stop> {
        let start = self.i + 1;
        let mut j = start;
        loop {
            let rest = self.b.get(j..).unwrap_or_default();
            let end = quote_or_backslash(rest);
            let run = &rest[..end.unwrap_or(rest.len())];
            if !is_printable_ascii(run) {
                check_run(run, j)?;
            }
            let Some(k) = end else {
                return Err(Stop::Syntax(self.b.len(), "EOF while parsing a string"));
            };
            j += k;
            if self.b[j] == b'"' {
                self.i = j + 1;
                return Ok(&self.b[start..j]);
            }
            j = self.escape(j)?;
        }
    }

    /// The escape at `self.b[j]` (its backslash): the index just past it. A `\u` escape of a
    /// UTF-16 surrogate must be a pair, a leading surrogate then a trailing one, as serde_json
    /// requires of a string it decodes (a lone one is no character).
    fn escape(&self, j: usize) -> Result<usize, Stop> {
        match self.b.get(j + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(j + 2),
            Some(b'u') => unicode_escape(self.b, j)
                .map(|(_, len)| j + len)
                .map_err(|what| Stop::Syntax(j, what)),
            _ => Err(Stop::Syntax(j, "invalid escape")),
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Stop> {
        if self.b.get(self.i..self.i + word.len()) != Some(word) {
            return Err(Stop::Syntax(self.i, "expected value"));
        }
        self.i += word.len();
        self.take()
    }

    /// A number at `self.i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<&'a [u8], Stop> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Stop::Syntax(self.i, "invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(Stop::Syntax(self.i, "invalid number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(Stop::Syntax(self.i, "invalid number"));
            }
            self.digits();
        }
        Ok(&self.b[start..self.i])
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }
}

/// Whether a key as written (`raw`, between its quotes) is `name`, escapes read. An escape is
/// longer than the character it stands for, so only a longer key with a backslash is unescaped.
fn key_is(raw: &[u8], name: &str) -> bool {
    raw == name.as_bytes()
        || raw.len() > name.len()
            && raw.contains(&b'\\')
            && unescape(raw).is_some_and(|k| k == name)
}

/// A top-level key as text: as written, or unescaped when it has escapes (only a marker key
/// matters then; any other is the empty name).
fn key_name(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    if !raw.contains(&b'\\') {
        // The scan checked the key's text as UTF-8.
        return std::borrow::Cow::Borrowed(std::str::from_utf8(raw).unwrap_or_default());
    }
    let unescaped = unescape(raw).unwrap_or_default();
    if MARKERS.contains(&unescaped.as_str())
        || CAP_KEYS.contains(&unescaped.as_str())
        || nested_cap(&unescaped).is_some()
    {
        std::borrow::Cow::Owned(unescaped)
    } else {
        std::borrow::Cow::Borrowed("")
    }
}

/// The [`NESTED_CAPS`] entry (and its index) whose outer member is `key`.
fn nested_cap(key: &str) -> Option<(usize, &'static (&'static str, &'static str))> {
    NESTED_CAPS
        .iter()
        .enumerate()
        .find(|(_, (outer, _))| *outer == key)
}

/// What a kept top-level value is, from its (already validated) bytes: a string, a boolean, a
/// whole number that fits a `u64` (as serde_json would read it), or something else.
fn field(raw: &[u8]) -> Field {
    match raw.first() {
        Some(b'"') => {
            let inside = &raw[1..raw.len() - 1];
            match std::str::from_utf8(inside) {
                Ok(s) if !inside.contains(&b'\\') => Field::Str(s.to_owned()),
                _ => unescape(inside).map_or(Field::Other, Field::Str),
            }
        }
        Some(b't') => Field::Bool(true),
        Some(b'f') => Field::Bool(false),
        Some(b'0'..=b'9') if raw.iter().all(u8::is_ascii_digit) => std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(Field::Other, Field::U64),
        _ => Field::Other,
    }
}

/// A run of a string's text, at `at` in the body, that is not all printable ASCII: refused at
/// its first fault, a control character (JSON requires those escaped) or where it stops being
/// UTF-8. A multi-byte character never spans a quote or a backslash, so each run is checked
/// whole. Text in other scripts comes here, so the search for a control character is a fold
/// over the whole run (no early exit, vectorised) before any byte-by-byte look for where it is.
fn check_run(run: &[u8], at: usize) -> Result<(), Stop> {
    let control = has_control(run)
        .then(|| run.iter().position(|&c| c < 0x20))
        .flatten();
    let text = &run[..control.unwrap_or(run.len())];
    if let Err(e) = std::str::from_utf8(text) {
        return Err(Stop::Syntax(at + e.valid_up_to(), "invalid UTF-8"));
    }
    match control {
        Some(k) => Err(Stop::Syntax(at + k, "control character in a string")),
        None => Ok(()),
    }
}

/// The 400 for a body that is not JSON: what was expected, where (as serde_json says it).
fn invalid_json(bytes: &[u8], at: usize, what: &str) -> GatewayError {
    let before = &bytes[..at.min(bytes.len())];
    let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
    let column = 1 + before.iter().rev().take_while(|&&c| c != b'\n').count();
    GatewayError::invalid_request(format!(
        "We could not parse the JSON body of your request ({what} at line {line} column {column}). The body must be a JSON object."
    ))
    .with_code("invalid_json")
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// Each seed, and every one-byte deletion and substitution (by each of `interesting`) of it.
    pub(crate) fn mutations(seeds: &[&[u8]], interesting: &[u8]) -> Vec<Vec<u8>> {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for seed in seeds {
            cases.push(seed.to_vec());
            for i in 0..seed.len() {
                let mut deleted = seed.to_vec();
                deleted.remove(i);
                cases.push(deleted);
                for &b in interesting {
                    let mut changed = seed.to_vec();
                    changed[i] = b;
                    cases.push(changed);
                }
            }
        }
        cases
    }

    /// Values and keys in a parsed tree, counted as the scan counts them.
    fn count(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(count).sum::<usize>(),
            Value::Object(o) => 1 + o.values().map(|v| 1 + count(v)).sum::<usize>(),
            _ => 1,
        }
    }

    /// The scan accepts exactly what serde_json accepts as an object, counts what its tree holds,
    /// and reads the same top-level facts: seed bodies and every one-byte deletion and
    /// substitution of them (with the bytes JSON's grammar turns on).
    #[test]
    fn agrees_with_serde_json_on_bodies_and_their_mutations() {
        let seeds: [&[u8]; 10] = [
            // Runs longer than the scan's 32-byte blocks, on both sides of escapes and of a
            // multi-byte character.
            r#"{"model":"m","messages":[{"role":"user","content":"Plain text that runs past one block of thirty-two bytes, é then on past the next block \n and \" after it too"}]}"#.as_bytes(),
            // Surrogate pairs and other `\u` escapes, and text in another script.
            r#"{"model":"m","system":"\ud83d\ude00 \u00e9\uDBFF\uDFFF \u0041 x","inputText":"Ἐν ἀρχῇ ἦν ὁ λόγος, καὶ ὁ λόγος ἦν πρὸς τὸν θεόν"}"#.as_bytes(),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi "you" \ \/ 
"}],"stream":true,"max_tokens":256}"#.as_bytes(),
            r#" { "modelId" : "a.b-c:0" , "x" : [ 1 , -2.5e+3 , 0.25 , true , false , null , { } , [ ] ] , "inputText" : "é ✓" } "#.as_bytes(),
            br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"system":[{"type":"text","text":"s"}],"temperature":0.7}"#,
            br#"{"model_id":"m","max_completion_tokens":18446744073709551615,"max_tokens":5,"n":-0,"e":1E9}"#,
            br#"{"a":{"b":{"c":[[[[]]]]}},"stream":"yes","model":7}"#,
            // The native bodies' caps, in config objects.
            br#"{"inputText":"t","textGenerationConfig":{"maxTokenCount":5,"x":[1]},"inferenceConfig":{"maxTokens":7}}"#,
            // Escaped cap keys, and the caps in the order that does not match their precedence.
            br#"{"max_output_tokens":2,"max_completion_tokens":1,"max\u005ftokens":7,"m\u006fdel":"m"}"#,
            b"{}",
        ];
        let cases = mutations(&seeds, b"\"\\{}[],:0-.eEtfn x\n\x01\x7f\xff\xc3");
        for case in &cases {
            let ours = BodyHead::parse(case);
            let theirs = serde_json::from_slice::<Map<String, Value>>(case);
            let text = String::from_utf8_lossy(case);
            match (&ours, &theirs) {
                (Ok(head), Ok(object)) => {
                    // A repeated key counts each time it is read; the tree keeps the last one.
                    let tree = count(&Value::Object(object.clone()));
                    assert!(head.values() >= tree, "{text}");
                    if seeds.contains(&&case[..]) {
                        assert_eq!(head.values(), tree, "{text}");
                    }
                    let mut expected = BodyHead::of(object);
                    expected.values = head.values;
                    assert_eq!(head, &expected, "{text}");
                }
                (Err(e), Err(_)) => assert_eq!(e.status(), 400, "{text}"),
                // The scan checks a number's grammar, not its magnitude: a number past f64's
                // range is refused by the decode that follows (400 there).
                (Ok(_), Err(e)) if e.to_string().starts_with("number out of range") => {}
                _ => panic!(
                    "scan {:?} vs serde_json {:?} on {text}",
                    ours.is_ok(),
                    theirs.is_ok()
                ),
            }
        }
        assert!(cases.len() > 3000, "{}", cases.len());
    }

    /// A member repeated at the top level is read as serde_json's map keeps it, the last one:
    /// a native body is decoded that way, so the model a key's allow-list is checked against
    /// is the one the request then carries.
    #[test]
    fn a_repeated_member_is_read_as_its_last_occurrence() {
        /// A body, and the model, `stream` and cap read from it.
        type Case<'a> = (&'a [u8], Option<&'a str>, Option<bool>, Option<u64>);
        let cases: [Case; 6] = [
            (
                br#"{"model":"allowed","model":"other"}"#,
                Some("other"),
                None,
                None,
            ),
            (br#"{"model":5,"model":"other"}"#, Some("other"), None, None),
            (
                br#"{"model":"allowed","m\u006fdel":"other"}"#,
                Some("other"),
                None,
                None,
            ),
            (
                br#"{"model":"a","model":5,"model_id":"b"}"#,
                Some("b"),
                None,
                None,
            ),
            (
                br#"{"stream":true,"stream":false,"max_tokens":1,"max_tokens":100000}"#,
                None,
                Some(false),
                Some(100_000),
            ),
            (
                br#"{"stream":true,"stream":"x","max_tokens":5,"max_tokens":"x"}"#,
                None,
                None,
                None,
            ),
        ];
        for (body, model, stream, cap) in cases {
            let head = BodyHead::parse(body).unwrap();
            let text = String::from_utf8_lossy(body);
            assert_eq!(
                (
                    head.model(),
                    head.stream(),
                    head.max_tokens(InboundFormat::OpenAi)
                ),
                (model, stream, cap),
                "{text}"
            );
            let object: Map<String, Value> = serde_json::from_slice(body).unwrap();
            let mut expected = BodyHead::of(&object);
            expected.values = head.values;
            assert_eq!(head, expected, "{text}");
        }
    }

    /// Each format's cap is read where its decode reads it, whatever the order of the members,
    /// escaped keys included; a member another format reads caps nothing, so no body lowers
    /// its admission estimate below what its upstream is sent.
    #[test]
    fn the_output_cap_is_read_where_the_format_reads_it() {
        use InboundFormat::{BedrockClaude, BedrockTitan, Converse, Embeddings, OpenAi, Responses};
        let cases: [(&[u8], InboundFormat, Option<u64>); 20] = [
            (
                br#"{"max_completion_tokens":1,"max_output_tokens":2,"max_tokens":3}"#,
                OpenAi,
                Some(1),
            ),
            (
                br#"{"max_tokens":3,"max_output_tokens":2,"max_completion_tokens":1}"#,
                OpenAi,
                Some(1),
            ),
            // OpenAI chat does not read `max_output_tokens`: the request is capped by `max_tokens`.
            (br#"{"max_output_tokens":2,"max_tokens":300}"#, OpenAi, Some(300)),
            (br#"{"max_output_tokens":2}"#, OpenAi, None),
            (br#"{"max\u005ftokens":5}"#, OpenAi, Some(5)),
            (br#"{"max_t\u006fkens":5,"max_completion_tokens":"x"}"#, OpenAi, Some(5)),
            // The Responses API reads only `max_output_tokens`.
            (br#"{"max_tokens":1,"max_output_tokens":200}"#, Responses, Some(200)),
            (br#"{"max_completion_tokens":1}"#, Responses, None),
            // Claude reads only `max_tokens`.
            (br#"{"max_completion_tokens":1,"max_tokens":4096}"#, BedrockClaude, Some(4096)),
            (br#"{"max_output_tokens":1}"#, BedrockClaude, None),
            // Titan and Converse read a member of a config object, its last occurrence's.
            (
                br#"{"max_tokens":1,"textGenerationConfig":{"temperature":0.5,"maxTokenCount":512}}"#,
                BedrockTitan,
                Some(512),
            ),
            (
                br#"{"textGenerationConfig":{"maxTokenCount":1,"maxTokenCount":700}}"#,
                BedrockTitan,
                Some(700),
            ),
            (
                br#"{"textGenerationConfig":{"maxTokenCount":1},"textGenerationConfig":{}}"#,
                BedrockTitan,
                None,
            ),
            (
                br#"{"textGenerationConfig":{"maxTokenCount":1},"textGenerationConfig":5}"#,
                BedrockTitan,
                None,
            ),
            (
                br#"{"textGenerationConfig":{"maxTok\u0065nCount":64}}"#,
                BedrockTitan,
                Some(64),
            ),
            (br#"{"maxTokenCount":1}"#, BedrockTitan, None),
            (
                br#"{"max_tokens":1,"inferenceConfig":{"maxTokens":1000,"topP":0.9}}"#,
                Converse,
                Some(1000),
            ),
            (
                br#"{"inferenceC\u006fnfig":{"x":{"maxTokens":1},"maxTokens":90}}"#,
                Converse,
                Some(90),
            ),
            (br#"{"inferenceConfig":{"maxTokens":"many"}}"#, Converse, None),
            // Embeddings produce no output tokens.
            (br#"{"max_tokens":100}"#, Embeddings, Some(0)),
        ];
        for (body, format, cap) in cases {
            let head = BodyHead::parse(body).unwrap();
            let text = String::from_utf8_lossy(body);
            assert_eq!(head.max_tokens(format), cap, "{format:?} {text}");
            let object: Map<String, Value> = serde_json::from_slice(body).unwrap();
            assert_eq!(BodyHead::of(&object).max_tokens(format), cap, "{text}");
        }
    }

    /// serde_json (built with `raw_value`) reads an object whose first key is this token as the
    /// JSON text in its string, or refuses it, and a sorted map puts it first wherever it was
    /// written: detection refuses it as any key.
    #[test]
    fn the_raw_value_key_is_refused_anywhere() {
        for body in [
            &br#"{"$serde_json::private::RawValue":"{\"model\":\"x\"}"}"#[..],
            br#"{"model":"m","x":{"$serde_json::private::RawValue":"1"}}"#,
            br#"{"model":"m","x":[{"\u0024serde_json::private::RawValue":"1"}]}"#,
            br#"{"model":"m","x":{"$serde_json::private::RawValue":1}}"#,
        ] {
            let e = BodyHead::parse(body).unwrap_err();
            let text = String::from_utf8_lossy(body);
            assert_eq!(
                (e.status().as_u16(), e.code()),
                (400, Some("invalid_json")),
                "{text}"
            );
        }
        let later = br#"{"model":"m","x":{"a":1,"$serde_json::private::RawValue":"1"}}"#;
        assert_eq!(
            BodyHead::parse(later).unwrap_err().code(),
            Some("invalid_json")
        );
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
