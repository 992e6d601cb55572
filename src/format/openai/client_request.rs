//! A client's OpenAI body → the canonical request, read by a byte scan instead of serde.
//!
//! The canonical request *is* an OpenAI body, so serde's derive decodes it. But most of a real
//! request's bytes are its messages' text, which serde_json reads with its general string parse
//! (a word-at-a-time search for the end and for escapes) and per-key field matching: on a 13.6 KB
//! conversation the typed decode cost more than twice detection's whole scan of the same bytes.
//!
//! [`decode`] walks the body once and builds the same [`ChatRequest`] serde would: every member
//! of the request, its messages (text, content parts, tool calls and results), its tools and
//! every member it does not know (into `extra`, as [`Value`]s) are read by hand. Each string is
//! found with a vector search, checked for control characters, copied once and unescaped by hand
//! when it has a backslash; numbers are read where serde_json reads them exactly the same way (an
//! integer that fits, a decimal of at most 2^53 and a power of ten of at most 22, which one IEEE
//! division or multiplication rounds correctly), and nothing else. Serde still reads the few
//! members whose shape is rarer than its cost: `thinking` and `guardrailConfig` (alone, wrapped
//! so they sit as deep as in the body), and a message with `thinking_blocks` or a `file` part
//! (that message alone, likewise).
//!
//! What the scan does not read exactly as serde would — a repeated member, an escape or a number
//! it leaves alone, a wrong type, nesting deeper than [`MAX_DEPTH`] — answers `None` (a message:
//! decoded by serde alone first), and the caller decodes the whole body with serde as before, so
//! every error a client sees is still serde's. Tests hold the two decodes equal on thousands of
//! mutated bodies and on a body with every member of the request.
//!
//! [`decode_within`] is the same walk as detection's one parse of a chat body: it counts every
//! value and key against a budget as detection's scan does, and answers `None` past it or
//! wherever serde would read a member (values the walk cannot count), leaving the body to
//! detection's two steps.
//!
//! Hand-written because serde cannot skip a member without walking it (`IgnoredAny` still scans
//! and unescapes every string), and a borrowed or lazy JSON type would still leave the typed
//! decode to serde. A member added to [`ChatRequest`] or [`Message`] must be read here too (or
//! sent to serde like `thinking`); otherwise it lands in `extra`, which the every-member test
//! catches.
//!
//! ```
//! use open_bedrock_server::format::openai::client_request::decode;
//! use open_bedrock_server::model::ChatRequest;
//!
//! let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say \"hi\"\n"}],"seed":7}"#;
//! let fast = decode(body).unwrap();
//! assert_eq!(fast, serde_json::from_str::<ChatRequest>(body).unwrap());
//! assert_eq!(fast.messages[0].text_content(), "Say \"hi\"\n");
//!
//! // Content parts and tools are read too; what serde refuses is left to it whole.
//! let parts = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],
//!     "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#;
//! assert_eq!(decode(parts).unwrap(), serde_json::from_str::<ChatRequest>(parts).unwrap());
//! assert!(decode(r#"{"model":"m","messages":[{"role":"user","content":7}]}"#).is_none());
//! ```

use std::borrow::Cow;
use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use crate::format::scan::{
    has_control, is_printable_ascii, quote_or_backslash, skip_value, skip_ws, unicode_escape,
    RAW_VALUE_KEY,
};
use crate::model::{
    function_kind, CacheControl, ChatRequest, ContentPart, FunctionCall, FunctionDefinition,
    ImageUrl, Message, MessageContent, Role, Stop, StreamOptions, Tool, ToolCall, ToolChoice,
};

/// The deepest container the scan reads, counting the body itself as 1; anything deeper is left
/// to serde, whose own limit (128) then decides.
pub const MAX_DEPTH: usize = 100;

/// `text` (one JSON object) as a request (see the module docs); `None` leaves the body to serde,
/// for its error.
pub fn decode(text: &str) -> Option<ChatRequest> {
    decode_text(&Text::new(text, usize::MAX, false))
}

/// `text` as a request, read by the walk alone within a budget of `max_values` JSON values (every
/// value and object key counts one, as [`BodyHead`](crate::detect::BodyHead) counts them):
/// detection's one parse of a chat body. `None` past the budget; where serde would read a member
/// (its tree would be built outside the budget: the walk stops first); at a top-level
/// `anthropic_version` or `inputText` (a native body's markers); and wherever [`decode`] answers
/// `None`. The caller then takes the two-step path (detection's scan, then [`decode`]).
pub fn decode_within(text: &str, max_values: usize) -> Option<ChatRequest> {
    decode_text(&Text::new(text, max_values, true))
}

/// The body's text as the walk reads it, and what the walk counts.
struct Text<'a> {
    s: &'a str,
    /// The values and keys the budget still allows.
    left: Cell<usize>,
    /// Detection's walk ([`decode_within`]): a native body's marker at the top level ends it, and
    /// so does a member serde would read (nothing is built outside the budget).
    counted: bool,
}

impl<'a> Text<'a> {
    fn new(s: &'a str, max_values: usize, counted: bool) -> Self {
        Text {
            s,
            left: Cell::new(max_values),
            counted,
        }
    }

    /// `n` more values against the budget; `None` past it.
    fn take(&self, n: usize) -> Option<()> {
        self.left.set(self.left.get().checked_sub(n)?);
        Some(())
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        self.s
    }
}

fn decode_text(text: &Text<'_>) -> Option<ChatRequest> {
    // The body itself is a value.
    text.take(1)?;
    let b = text.as_bytes();
    let mut request = ChatRequest::default();
    let (mut model, mut messages, mut seen) = (None, None, Seen::default());
    let end = object(text, skip_ws(b, 0), |key, at| {
        Some(match &*key {
            "model" => seen.first(0, string(text, at), |v| model = Some(v))?,
            "messages" => seen.first(1, self::messages(text, at), |v| messages = Some(v))?,
            "stream" => seen.first(2, opt(text, at, boolean), |v| request.stream = v)?,
            "stream_options" => seen.first(3, opt(text, at, stream_options), |v| {
                request.stream_options = v
            })?,
            "max_completion_tokens" => seen.first(4, opt(text, at, uint), |v| {
                request.max_completion_tokens = v
            })?,
            "max_tokens" => seen.first(5, opt(text, at, uint), |v| request.max_tokens = v)?,
            "temperature" => seen.first(6, opt(text, at, float), |v| request.temperature = v)?,
            "top_p" => seen.first(7, opt(text, at, float), |v| request.top_p = v)?,
            "n" => seen.first(8, opt(text, at, uint), |v| request.n = v)?,
            "stop" => seen.first(9, opt(text, at, stop), |v| request.stop = v)?,
            "tools" => seen.first(10, opt(text, at, |t, a| list(t, a, tool)), |v| {
                request.tools = v
            })?,
            "tool_choice" => {
                seen.first(11, opt(text, at, tool_choice), |v| request.tool_choice = v)?
            }
            "parallel_tool_calls" => seen.first(12, opt(text, at, boolean), |v| {
                request.parallel_tool_calls = v
            })?,
            "response_format" => seen.first(13, opt(text, at, |t, a| value(t, a, 2)), |v| {
                request.response_format = v
            })?,
            "reasoning_effort" => {
                seen.first(14, opt(text, at, string), |v| request.reasoning_effort = v)?
            }
            "thinking" => seen.first(15, serde_at(text, at, 1), |[v]: [_; 1]| {
                request.thinking = v
            })?,
            "guardrailConfig" => seen.first(16, serde_at(text, at, 1), |[v]: [_; 1]| {
                request.guardrail_config = v
            })?,
            "user" => seen.first(17, opt(text, at, string), |v| request.user = v)?,
            // A native body's marker: detection's walk stops here (the body is not chat).
            "anthropic_version" | "inputText" if text.counted => return None,
            _ => keep(&mut request.extra, key, text, at, 2)?,
        })
    })?;
    // serde_json refuses anything but whitespace after the value.
    if skip_ws(b, end) != b.len() {
        return None;
    }
    request.model = model?;
    request.messages = messages?;
    Some(request)
}

/// The known members of one object seen so far, one bit each: serde refuses a repeated one.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    /// Member `bit`'s value, read as `read` (the value and the index past it); `None` when it
    /// was seen before or does not read. Hands the value to `set` and answers the end.
    fn first<T>(
        &mut self,
        bit: u32,
        read: Option<(T, usize)>,
        set: impl FnOnce(T),
    ) -> Option<usize> {
        if self.0 & (1 << bit) != 0 {
            return None;
        }
        self.0 |= 1 << bit;
        let (v, end) = read?;
        set(v);
        Some(end)
    }
}

fn expect(b: &[u8], at: usize, byte: u8) -> Option<()> {
    (b.get(at) == Some(&byte)).then_some(())
}

/// Walks the object at `text[at]`: `member(key, value_start)` reads each member and answers the
/// index past its value. Answers the index past the object.
fn object<'a>(
    text: &Text<'a>,
    at: usize,
    mut member: impl FnMut(Cow<'a, str>, usize) -> Option<usize>,
) -> Option<usize> {
    let b = text.as_bytes();
    sequence(text, at, b'{', b'}', |at| {
        let (key, key_end) = str_at(text, at)?;
        // serde_json (built with `raw_value`) reads an object whose first key is this token as
        // the JSON inside its string value: left to serde, wherever it sits.
        if key == RAW_VALUE_KEY {
            return None;
        }
        let colon = skip_ws(b, key_end);
        expect(b, colon, b':')?;
        member(key, skip_ws(b, colon + 1))
    })
}

/// Walks a JSON object or array at `b[at]` (`open` … `close`): `item(start)` reads each member
/// or element and answers the index past it; commas between them, whitespace around them.
/// Answers the index past the closing bracket.
fn sequence(
    text: &Text<'_>,
    at: usize,
    open: u8,
    close: u8,
    mut item: impl FnMut(usize) -> Option<usize>,
) -> Option<usize> {
    let b = text.as_bytes();
    // A member is a key and a value; an element, a value.
    let values = if open == b'{' { 2 } else { 1 };
    expect(b, at, open)?;
    let mut at = skip_ws(b, at + 1);
    if b.get(at) == Some(&close) {
        return Some(at + 1);
    }
    loop {
        text.take(values)?;
        at = skip_ws(b, item(at)?);
        match *b.get(at)? {
            b',' => at = skip_ws(b, at + 1),
            c if c == close => return Some(at + 1),
            _ => return None,
        }
    }
}

/// The array at `text[at]`, each element read by `element` (the value and the index past it),
/// and the index past the array.
fn list<T>(
    text: &Text<'_>,
    at: usize,
    mut element: impl FnMut(&Text<'_>, usize) -> Option<(T, usize)>,
) -> Option<(Vec<T>, usize)> {
    let mut out = Vec::new();
    let end = elements(text, at, |text, at| {
        let (v, end) = element(text, at)?;
        out.push(v);
        Some(end)
    })?;
    Some((out, end))
}

/// Walks the array at `text[at]`: `element(text, start)` reads each element and answers the index
/// past it. Answers the index past the array.
fn elements(
    text: &Text<'_>,
    at: usize,
    mut element: impl FnMut(&Text<'_>, usize) -> Option<usize>,
) -> Option<usize> {
    sequence(text, at, b'[', b']', |at| element(text, at))
}

/// `null`, or what `read` reads, at `text[at]`: an `Option` member as serde reads it.
fn opt<T>(
    text: &Text<'_>,
    at: usize,
    read: impl FnOnce(&Text<'_>, usize) -> Option<(T, usize)>,
) -> Option<(Option<T>, usize)> {
    if text.as_bytes().get(at) == Some(&b'n') {
        return Some((None, literal(text.as_bytes(), at, b"null")?));
    }
    let (v, end) = read(text, at)?;
    Some((Some(v), end))
}

fn literal(b: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    (b.get(at..at + word.len())? == word).then_some(at + word.len())
}

fn boolean(text: &Text<'_>, at: usize) -> Option<(bool, usize)> {
    let b = text.as_bytes();
    match b.get(at)? {
        b't' => Some((true, literal(b, at, b"true")?)),
        b'f' => Some((false, literal(b, at, b"false")?)),
        _ => None,
    }
}

/// A `u32` member: an integer in range (serde refuses a fraction or an exponent there).
fn uint(text: &Text<'_>, at: usize) -> Option<(u32, usize)> {
    let (n, end) = number(text.as_bytes(), at)?;
    Some((u32::try_from(n.as_u64()?).ok()?, end))
}

/// An `f64` member: any number, an integer converted as serde's visitor converts it.
fn float(text: &Text<'_>, at: usize) -> Option<(f64, usize)> {
    let (n, end) = number(text.as_bytes(), at)?;
    Some((n.as_f64()?, end))
}

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The JSON number at `b[at]` as serde_json reads it, where that reading is sure: an integer that
/// fits a `u64` (or, negative and not zero, an `i64`); a decimal whose digits make an integer of
/// at most 2^53 (exact in an `f64`) times a power of ten of at most 22 (exact too), which one
/// IEEE operation rounds correctly, as serde_json's own parse does (Clinger's fast path). `None`
/// for the rest (`-0`, longer decimals, larger exponents) and for what is not a number.
fn number(b: &[u8], at: usize) -> Option<(Number, usize)> {
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let negative = b.get(at) == Some(&b'-');
    let int_start = at + usize::from(negative);
    let int_end = match b.get(int_start)? {
        b'0' => int_start + 1,
        b'1'..=b'9' => digits(int_start + 1),
        _ => return None,
    };
    let mut end = int_end;
    let mut fraction = &b[end..end];
    if b.get(end) == Some(&b'.') {
        let stop = digits(end + 1);
        if stop == end + 1 {
            return None;
        }
        fraction = &b[end + 1..stop];
        end = stop;
    }
    let mut exponent = 0i32;
    let has_exponent = matches!(b.get(end), Some(b'e' | b'E'));
    if has_exponent {
        let mut i = end + 1;
        let sign = match b.get(i) {
            Some(b'-') => -1,
            Some(b'+') => 1,
            _ => 0,
        };
        i += usize::from(sign != 0);
        let stop = digits(i);
        if stop == i || stop - i > 3 {
            return None;
        }
        exponent = b[i..stop]
            .iter()
            .fold(0, |n, &d| n * 10 + i32::from(d - b'0'));
        if sign < 0 {
            exponent = -exponent;
        }
        end = stop;
    }
    let int = &b[int_start..int_end];
    if fraction.is_empty() && !has_exponent {
        if int.len() > 20 {
            return None;
        }
        let value = int.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        return Some((
            match (negative, value) {
                (false, _) => Number::from(value),
                // serde_json reads `-0` as a float; left to it.
                (true, 0) => return None,
                (true, _) => Number::from(0i64.checked_sub_unsigned(value)?),
            },
            end,
        ));
    }
    let significand = int
        .iter()
        .chain(fraction)
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .filter(|&n| n <= 1 << 53)?;
    let power = exponent - i32::try_from(fraction.len()).ok()?;
    let magnitude = if significand == 0 {
        0.0
    } else {
        let scale = *POW10.get(usize::try_from(power.unsigned_abs()).ok()?)?;
        if power < 0 {
            significand as f64 / scale
        } else {
            significand as f64 * scale
        }
    };
    let value = if negative { -magnitude } else { magnitude };
    Some((Number::from_f64(value)?, end))
}

/// Any JSON value at `text[at]`, as serde_json's [`Value`] reads it; `depth` is the nesting a
/// container here would have (the body itself is 1).
fn value(text: &Text<'_>, at: usize, depth: usize) -> Option<(Value, usize)> {
    let b = text.as_bytes();
    Some(match *b.get(at)? {
        b'"' => {
            let (s, end) = string(text, at)?;
            (Value::String(s), end)
        }
        b'{' if depth <= MAX_DEPTH => {
            let mut map = Map::new();
            let end = object(text, at, |key, at| {
                let (v, end) = value(text, at, depth + 1)?;
                map.insert(key.into_owned(), v);
                Some(end)
            })?;
            (Value::Object(map), end)
        }
        b'[' if depth <= MAX_DEPTH => {
            let (list, end) = list(text, at, |t, a| value(t, a, depth + 1))?;
            (Value::Array(list), end)
        }
        b't' | b'f' => {
            let (v, end) = boolean(text, at)?;
            (Value::Bool(v), end)
        }
        b'n' => (Value::Null, literal(b, at, b"null")?),
        _ => {
            let (n, end) = number(b, at)?;
            (Value::Number(n), end)
        }
    })
}

/// A member a struct does not name, kept in its `extra` as serde's flatten keeps it (a repeated
/// key: the last one); `depth` as for [`value`]. The index past its value.
fn keep(
    extra: &mut Map<String, Value>,
    key: Cow<'_, str>,
    text: &Text<'_>,
    at: usize,
    depth: usize,
) -> Option<usize> {
    let (v, end) = value(text, at, depth)?;
    extra.insert(key.into_owned(), v);
    Some(end)
}

/// A member serde ignores (one a struct does not name): still read whole, so what serde refuses
/// in it is refused here too.
fn ignored(text: &Text<'_>, at: usize, depth: usize) -> Option<usize> {
    value(text, at, depth).map(|(_, end)| end)
}

/// The value at `text[at]`, `depth` containers deep in the body, decoded by serde as `W`: the
/// value wrapped in as many one-element arrays (`W` spells them: `[T; 1]`, `[[T; 1]; 1]`), so
/// serde's depth limit counts as in the body. For the members the scan leaves to serde. `None`
/// in detection's walk ([`decode_within`]): serde would build what the budget does not count.
fn serde_at<W: DeserializeOwned>(text: &Text<'_>, at: usize, depth: usize) -> Option<(W, usize)> {
    if text.counted {
        return None;
    }
    #[cfg(test)]
    tests::SERDE_READS.with(|n| n.set(n.get() + 1));
    let end = skip_value(text.as_bytes(), at).ok()?;
    let raw = text.get(at..end)?;
    let mut wrapped = String::with_capacity(raw.len() + 2 * depth);
    wrapped.extend(std::iter::repeat_n('[', depth));
    wrapped.push_str(raw);
    wrapped.extend(std::iter::repeat_n(']', depth));
    Some((serde_json::from_str(&wrapped).ok()?, end))
}

/// The array of messages at `text[at]` and the index just past it. A message the scan leaves to
/// serde is decoded by serde alone.
fn messages(text: &Text<'_>, at: usize) -> Option<(Vec<Message>, usize)> {
    // Each message goes into the list where it is built: a `Message` is some 200 bytes, and
    // each move of a whole one (out of a function, through an `Option`) is a `memcpy`.
    let mut out = Vec::new();
    let end = elements(text, at, |text, at| {
        message(text, at, &mut out).or_else(|| {
            let ([[m]], end): ([[Message; 1]; 1], usize) = serde_at(text, at, 2)?;
            out.push(m);
            Some(end)
        })
    })?;
    Some((out, end))
}

/// One message (an object three containers deep in the body), pushed onto `out`; the index
/// past it.
fn message(text: &Text<'_>, at: usize, out: &mut Vec<Message>) -> Option<usize> {
    let (mut role, mut content, mut name, mut tool_calls) = (None, None, None, None);
    let (mut tool_call_id, mut cache_control, mut extra) = (None, None, Map::new());
    let mut seen = Seen::default();
    let end = object(text, at, |key, at| {
        Some(match &*key {
            "role" => seen.first(0, self::role(text, at), |v| role = Some(v))?,
            "content" => seen.first(1, opt(text, at, self::content), |v| content = v)?,
            "name" => seen.first(2, opt(text, at, string), |v| name = v)?,
            "tool_calls" => seen.first(3, opt(text, at, |t, a| list(t, a, tool_call)), |v| {
                tool_calls = v
            })?,
            "tool_call_id" => seen.first(4, opt(text, at, string), |v| tool_call_id = v)?,
            "cache_control" => {
                seen.first(5, opt(text, at, self::cache_control), |v| cache_control = v)?
            }
            // Signed reasoning, rare in a request: serde reads the message.
            "thinking_blocks" => return None,
            _ => keep(&mut extra, key, text, at, 4)?,
        })
    })?;
    out.push(Message {
        role: role?,
        content,
        name,
        tool_calls,
        tool_call_id,
        cache_control,
        thinking_blocks: None,
        extra,
    });
    Some(end)
}

fn role(text: &Text<'_>, at: usize) -> Option<(Role, usize)> {
    let (name, end) = str_at(text, at)?;
    let role = match &*name {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        "function" => Role::Function,
        _ => return None,
    };
    Some((role, end))
}

/// A message's `content`: a string or an array of parts (serde's `MessageContent`).
fn content(text: &Text<'_>, at: usize) -> Option<(MessageContent, usize)> {
    match text.as_bytes().get(at)? {
        b'"' => string(text, at).map(|(s, end)| (MessageContent::Text(s), end)),
        b'[' => list(text, at, part).map(|(p, end)| (MessageContent::Parts(p), end)),
        _ => None,
    }
}

/// One content part (five containers deep).
fn part(text: &Text<'_>, at: usize) -> Option<(ContentPart, usize)> {
    let mut p = ContentPart::new(String::new());
    let (mut kind, mut seen) = (None, Seen::default());
    let end = object(text, at, |key, at| {
        Some(match &*key {
            "type" => seen.first(0, string(text, at), |v| kind = Some(v))?,
            "text" => seen.first(1, opt(text, at, string), |v| p.text = v)?,
            "image_url" => seen.first(2, opt(text, at, image_url), |v| p.image_url = v)?,
            "refusal" => seen.first(3, opt(text, at, string), |v| p.refusal = v)?,
            "cache_control" => {
                seen.first(4, opt(text, at, cache_control), |v| p.cache_control = v)?
            }
            // A document, rare beside text: serde reads the message.
            "file" => return None,
            _ => keep(&mut p.extra, key, text, at, 6)?,
        })
    })?;
    p.kind = kind?;
    Some((p, end))
}

fn image_url(text: &Text<'_>, at: usize) -> Option<(ImageUrl, usize)> {
    let (mut url, mut detail, mut seen) = (None, None, Seen::default());
    let end = object(text, at, |key, at| match &*key {
        "url" => seen.first(0, string(text, at), |v| url = Some(v)),
        "detail" => seen.first(1, opt(text, at, string), |v| detail = v),
        _ => ignored(text, at, 7),
    })?;
    Some((ImageUrl { url: url?, detail }, end))
}

fn cache_control(text: &Text<'_>, at: usize) -> Option<(CacheControl, usize)> {
    let (mut kind, mut ttl, mut seen) = (None, None, Seen::default());
    let end = object(text, at, |key, at| match &*key {
        "type" => seen.first(0, string(text, at), |v| kind = Some(v)),
        "ttl" => seen.first(1, opt(text, at, string), |v| ttl = v),
        // Deep enough wherever a breakpoint sits (a part's is the deepest, at six).
        _ => ignored(text, at, 7),
    })?;
    Some((CacheControl { kind: kind?, ttl }, end))
}

/// One tool call of an assistant message (five containers deep).
fn tool_call(text: &Text<'_>, at: usize) -> Option<(ToolCall, usize)> {
    let (mut id, mut kind, mut function, mut seen) = (None, None, None, Seen::default());
    let end = object(text, at, |key, at| match &*key {
        "id" => seen.first(0, string(text, at), |v| id = Some(v)),
        "type" => seen.first(1, string(text, at), |v| kind = Some(v)),
        "function" => seen.first(2, function_call(text, at), |v| function = Some(v)),
        _ => ignored(text, at, 6),
    })?;
    let call = ToolCall {
        id: id?,
        kind: kind.unwrap_or_else(function_kind),
        function: function?,
    };
    Some((call, end))
}

fn function_call(text: &Text<'_>, at: usize) -> Option<(FunctionCall, usize)> {
    let (mut name, mut arguments, mut seen) = (None, None, Seen::default());
    let end = object(text, at, |key, at| match &*key {
        "name" => seen.first(0, string(text, at), |v| name = Some(v)),
        "arguments" => seen.first(1, string(text, at), |v| arguments = Some(v)),
        _ => ignored(text, at, 7),
    })?;
    Some((FunctionCall::new(name?, arguments.unwrap_or_default()), end))
}

fn stream_options(text: &Text<'_>, at: usize) -> Option<(StreamOptions, usize)> {
    let (mut options, mut seen) = (StreamOptions::default(), Seen::default());
    let end = object(text, at, |key, at| {
        Some(match &*key {
            "include_usage" => {
                seen.first(0, opt(text, at, boolean), |v| options.include_usage = v)?
            }
            _ => keep(&mut options.extra, key, text, at, 3)?,
        })
    })?;
    Some((options, end))
}

/// `stop`: one string or a list of strings (serde's untagged `Stop`).
fn stop(text: &Text<'_>, at: usize) -> Option<(Stop, usize)> {
    match text.as_bytes().get(at)? {
        b'"' => string(text, at).map(|(s, end)| (Stop::One(s), end)),
        _ => list(text, at, string).map(|(l, end)| (Stop::Many(l), end)),
    }
}

/// `tool_choice`: a string is a mode, anything else an object kept as written (serde's untagged
/// `ToolChoice`).
fn tool_choice(text: &Text<'_>, at: usize) -> Option<(ToolChoice, usize)> {
    match text.as_bytes().get(at)? {
        b'"' => string(text, at).map(|(s, end)| (ToolChoice::Mode(s), end)),
        _ => value(text, at, 2).map(|(v, end)| (ToolChoice::Object(v), end)),
    }
}

/// One tool definition (three containers deep).
fn tool(text: &Text<'_>, at: usize) -> Option<(Tool, usize)> {
    let mut t = Tool {
        kind: String::new(),
        function: None,
        cache_control: None,
        extra: Map::new(),
    };
    let (mut kind, mut seen) = (None, Seen::default());
    let end = object(text, at, |key, at| {
        Some(match &*key {
            "type" => seen.first(0, string(text, at), |v| kind = Some(v))?,
            "function" => seen.first(1, opt(text, at, function_definition), |v| t.function = v)?,
            "cache_control" => {
                seen.first(2, opt(text, at, cache_control), |v| t.cache_control = v)?
            }
            _ => keep(&mut t.extra, key, text, at, 4)?,
        })
    })?;
    t.kind = kind?;
    Some((t, end))
}

/// A function tool's definition (four containers deep).
fn function_definition(text: &Text<'_>, at: usize) -> Option<(FunctionDefinition, usize)> {
    let mut f = FunctionDefinition::new(String::new());
    let (mut name, mut seen) = (None, Seen::default());
    let end = object(text, at, |key, at| {
        Some(match &*key {
            "name" => seen.first(0, string(text, at), |v| name = Some(v))?,
            "description" => seen.first(1, opt(text, at, string), |v| f.description = v)?,
            "parameters" => seen.first(2, opt(text, at, |t, a| value(t, a, 5)), |v| {
                f.parameters = v
            })?,
            "strict" => seen.first(3, opt(text, at, boolean), |v| f.strict = v)?,
            _ => keep(&mut f.extra, key, text, at, 5)?,
        })
    })?;
    f.name = name?;
    Some((f, end))
}

/// The JSON string at `text[at]` and the index just past it: borrowed from the body when it has
/// no escape (a key, a role), decoded (see [`string`]) when it has. Keys are short and plain
/// ASCII: a byte loop finds the end of one sooner than the vector searches `string` starts.
fn str_at<'a>(text: &Text<'a>, at: usize) -> Option<(Cow<'a, str>, usize)> {
    let b = text.as_bytes();
    expect(b, at, b'"')?;
    let mut i = at + 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => return Some((Cow::Borrowed(text.s.get(at + 1..i)?), i + 1)),
            b'\\' | 0..0x20 | 0x80.. => break,
            _ => i += 1,
        }
    }
    // An escape, a control character (refused there) or text beyond ASCII.
    let (s, end) = string(text, at)?;
    Some((Cow::Owned(s), end))
}

/// The JSON string at `text[at]`, decoded, and the index just past it: one pass that finds each
/// quote or backslash with a vector search, checks the text between for control characters
/// (which JSON requires escaped and serde_json refuses raw), copies it once and decodes the
/// escapes as serde_json does. `None` for an escape it refuses (an unknown letter, a short or
/// non-hex `\u`, a lone surrogate).
fn string(text: &Text<'_>, at: usize) -> Option<(String, usize)> {
    let b = text.as_bytes();
    expect(b, at, b'"')?;
    let mut out: Option<String> = None;
    let mut run = at + 1;
    loop {
        let stop = run + quote_or_backslash(b.get(run..)?)?;
        let plain = text.get(run..stop)?;
        if !is_printable_ascii(plain.as_bytes()) && has_control(plain.as_bytes()) {
            return None;
        }
        if b[stop] == b'"' {
            let s = match out {
                None => plain.to_owned(),
                Some(mut s) => {
                    s.push_str(plain);
                    s
                }
            };
            return Some((s, stop + 1));
        }
        // At the first escape, room for the whole string as written (what it decodes to is no
        // longer): one block, never regrown, for the price of finding the end once more.
        let s = match &mut out {
            Some(s) => s,
            None => out.insert(String::with_capacity(2 * (stop - at) + 16)),
        };
        s.push_str(plain);
        let (c, len) = escape(b, stop)?;
        s.push(c);
        run = stop + len;
    }
}

/// The escape at `b[at]` (a backslash): its character and its length.
fn escape(b: &[u8], at: usize) -> Option<(char, usize)> {
    Some(match b.get(at + 1)? {
        b'"' => ('"', 2),
        b'\\' => ('\\', 2),
        b'/' => ('/', 2),
        b'b' => ('\u{8}', 2),
        b'f' => ('\u{c}', 2),
        b'n' => ('\n', 2),
        b'r' => ('\r', 2),
        b't' => ('\t', 2),
        b'u' => return unicode_escape(b, at).ok(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// The members and messages `serde_at` handed to serde on this thread.
        pub(super) static SERDE_READS: Cell<usize> = const { Cell::new(0) };
    }

    /// Detection's walk never hands a member or a message to serde, whose tree the budget would
    /// not bound (a message cut short by the budget used to be retried by serde whole); the
    /// same bodies are read by serde in translation's walk.
    #[test]
    fn detection_s_walk_builds_nothing_outside_the_budget() {
        let pad = "{\"a\":0},".repeat(200);
        let bodies = [
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x","pad":[{pad}{{}}]}}]}}"#),
            format!(r#"{{"model":"m","messages":[],"thinking":{{"type":"enabled","budget_tokens":1024,"pad":[{pad}{{}}]}}}}"#),
            r#"{"model":"m","messages":[{"role":"assistant","content":"a","thinking_blocks":null}]}"#.to_owned(),
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,AA=="}}]}]}"#.to_owned(),
        ];
        for (i, body) in bodies.iter().enumerate() {
            let before = SERDE_READS.with(Cell::get);
            assert!(decode_within(body, 100).is_none(), "{body}");
            // Within the budget, only the first (no member serde reads) is the walk's own.
            assert_eq!(decode_within(body, usize::MAX).is_some(), i == 0, "{body}");
            assert_eq!(SERDE_READS.with(Cell::get), before, "{body}");
        }
        // Translation's walk hands `thinking` to serde.
        let before = SERDE_READS.with(Cell::get);
        assert!(decode(&bodies[1]).is_some());
        assert_eq!(SERDE_READS.with(Cell::get), before + 1);
    }

    fn serde(body: &str) -> Option<ChatRequest> {
        serde_json::from_str(body).ok()
    }

    #[test]
    fn conversations_decode_as_serde_decodes_them() {
        let bodies = [
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
            r#" { "messages" : [ { "content" : "a" , "role" : "system" } , {"role":"developer","content":""},
                {"role":"user","name":"ann","content":"b"}, {"role":"assistant","content":"c"} ] ,
                "model" : "m", "temperature": 0.5, "stream": true, "stream_options": {"include_usage": true},
                "tools": [{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
                "seed": 7, "metadata": {"k": "v"}, "unknown": [1, {"x": null}] } "#,
            r#"{"model":"m","messages":[{"role":"user","content":"q\"uote \\ back \/ \b\f\n\r\t tab \u00e9 \u20AC \ud83d\ude00 end"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Ελληνικά κείμενο 😀 and \u0000 nul"}]}"#,
            r#"{"messages":[],"model":"m"}"#,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"del \u{7f} ls \u{2028} \\uDBFF\\uDFFF\"}]}",
            r#"{"model":"m","messages":[{"role":"user","content":"a"}],"x":1,"x":2}"#,
            "{\r\n\t\"model\":\"m\",\r\n\t\"messages\":\t[\n{\"role\":\"user\",\r\"content\":\"a\"\n}\r]\n}\n",
            r#"{"model":"m","messages":[{"role":"user","content":"a"}],"user":"u","n":2}"#,
            // Messages the scan leaves to serde, one at a time, among plain ones.
            r#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"},{"role":"user","content":"ok"}]}"#,
            r#"{"model":"m","messages":[{"role":"function","name":"f","content":"r"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"assistant"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a","cache_control":{"type":"ephemeral"}}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a","name":null}]}"#,
            r#"{"model":"m","messages":[{"role":"us\u0065r","content":"a"}]}"#,
            r#"{"model":"m","messages":[{"rol\u0065":"user","content":"a"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a","refusal":null,"x":[1,{"y":2}]}]}"#,
            // Escaped keys name the member they spell, as serde unescapes them.
            r#"{"model":"m","messag\u0065s":[{"role":"user","content":"a"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a"}],"metadat\u0061":{},"\u00e9\n":1}"#,
            // Members the scan reads with null, and the shapes of stop and tool_choice.
            r#"{"model":"m","messages":[{"role":"assistant","content":null,"name":null,"tool_calls":null,"tool_call_id":null,"cache_control":null}],"stream":null,"stream_options":null,"max_tokens":null,"max_completion_tokens":null,"temperature":null,"top_p":null,"n":null,"stop":null,"tools":null,"tool_choice":null,"parallel_tool_calls":null,"response_format":null,"reasoning_effort":null,"thinking":null,"guardrailConfig":null,"user":null}"#,
            r#"{"model":"m","messages":[],"stop":"x","tool_choice":"auto"}"#,
            r#"{"model":"m","messages":[],"stop":[],"tool_choice":{"type":"function","function":{"name":"f"}}}"#,
            r#"{"model":"m","messages":[],"stop":["a","b\n"],"tool_choice":7}"#,
            r#"{"model":"m","messages":[],"stream_options":{"include_usage":false,"chunk":[1]}}"#,
            // A tool call without `type` (serde's default) or `arguments`, with members serde ignores.
            r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","x":[{}]},"index":0}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA==","detail":"low","x":null}},{"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}},{"type":"text","text":"t","cache_control":{"type":"ephemeral","ttl":"1h","y":1}}]}]}"#,
            // Members serde reads for the scan: signed reasoning and a document (that message alone).
            r#"{"model":"m","messages":[{"role":"assistant","content":"a","thinking_blocks":[{"type":"thinking","thinking":"t","signature":"s"}]},{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,AA==","filename":"a.pdf"}}]}]}"#,
        ];
        for body in bodies {
            let fast = decode(body).unwrap_or_else(|| panic!("not decoded by the scan: {body}"));
            assert_eq!(Some(fast), serde(body), "{body}");
        }
    }

    #[test]
    fn what_serde_refuses_is_left_to_it() {
        let bodies = [
            // What serde refuses, so its error is the one the client gets.
            r#"{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[]}"#,
            r#"{"model":"m","messages":[{"role":"bot","content":"a"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"\ud800 lone"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"\udc00 lone"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"\ud800\u0041"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"\uD800\uD800"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"\x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"\u12"}]}"#,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"raw\ttab\"}]}",
            r#"{"model":"m","messages":{"role":"user"}}"#,
            r#"{"model":"m"}"#,
            r#"{"model":7,"messages":[{"role":"user","content":"a"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a"}],"temperature":"hot"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a"}]} trailing"#,
            r#"{"model":"m","messages":[{"role":"user","content":7}]}"#,
            r#"{"model":"m","messages":[{"role":"tool","content":"r","tool_call_id":"a","tool_call_id":"b"}]}"#,
            // Members serde ignores are still read whole: what it refuses in them is refused.
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u","x":01}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f"},"index":"\x"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a","cache_control":{"type":"ephemeral","y":[1,]}}]}"#,
            r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","z":tru}}]}]}"#,
            // Commas and whitespace JSON does not allow.
            r#"{"model":"m","messages":[{"role":"user","content":"a",}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a"},]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a"}],}"#,
            "{\"model\":\"m\",\"messages\":[\u{c}{\"role\":\"user\",\"content\":\"a\"}]}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}\u{a0}]}",
        ];
        for body in bodies {
            assert_eq!(decode(body), None, "{body}");
        }
    }

    /// serde_json's `raw_value` token as an object's first key makes serde read the object as
    /// the JSON in its string (or refuse it); the scan leaves every such object to serde, so
    /// the request the caller ends with is serde's, or serde's error.
    #[test]
    fn the_raw_value_token_is_left_to_serde() {
        let bodies = [
            r#"{"model":"m","messages":[],"response_format":{"$serde_json::private::RawValue":"[1,2]"}}"#,
            r#"{"model":"m","messages":[],"metadata":{"$serde_json::private::RawValue":"not json"}}"#,
            r#"{"model":"m","messages":[],"tool_choice":{"$serde_json::private::RawValue":"1","b":2}}"#,
            r#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"$serde_json::private::RawValue":5}}}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a","x":{"$serde_json::private::RawValue":"{}"}}]}"#,
            r#"{"model":"m","messages":[],"metadata":{"k":{"$serde_json\u003a:private::RawValue":"7"}}}"#,
        ];
        for body in bodies {
            // Whatever the scan answers is serde's request; `None` leaves the body to serde.
            if let Some(fast) = decode(body) {
                assert_eq!(Some(fast), serde(body), "{body}");
            }
        }
        assert_eq!(decode(bodies[0]), None);
        let response_format = serde(bodies[0]).unwrap().response_format;
        assert_eq!(response_format, Some(serde_json::json!([1, 2])));
        assert_eq!(serde(bodies[1]), None);
        // In a message, serde reads that message alone: `{}` in the string becomes the object.
        let message = decode(bodies[4]).unwrap().messages.remove(0);
        assert_eq!(message.extra.get("x"), Some(&serde_json::json!({})));
        // Serde reads the token as a plain key when it is not the first; the scan leaves it to
        // serde wherever it sits, which costs only a body no client sends.
        let later = r#"{"model":"m","messages":[],"metadata":{"a":1,"$serde_json::private::RawValue":"2"}}"#;
        assert_eq!(decode(later), None);
        let metadata = serde(later).unwrap().extra.remove("metadata");
        assert_eq!(
            metadata,
            Some(serde_json::json!({"a": 1, "$serde_json::private::RawValue": "2"}))
        );
    }

    /// A body with every member the request and its parts have, each read: the destructuring
    /// below stops compiling when a member is added, so the scan cannot miss it.
    #[test]
    fn every_member_is_read_as_serde_reads_it() {
        let body = r#"{"model":"gpt-4o","messages":[
            {"role":"system","content":"s","name":"n","cache_control":{"type":"ephemeral"}},
            {"role":"user","content":[{"type":"text","text":"t","cache_control":{"type":"ephemeral","ttl":"5m"}},
                {"type":"image_url","image_url":{"url":"https://x/y.png","detail":"high"}},
                {"type":"refusal","refusal":"r","other":{"a":[1.5,-2,true,null]}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}],"refusal":null},
            {"role":"tool","tool_call_id":"c1","content":"42"},
            {"role":"function","name":"f","content":"old"},
            {"role":"developer","content":"d","audio":{"id":"a"}}],
            "stream":true,"stream_options":{"include_usage":true,"x":1},"max_completion_tokens":100,
            "max_tokens":50,"temperature":0.7,"top_p":1,"n":2,"stop":["\n\n"],
            "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"a":{"type":"integer","minimum":-3,"maximum":1e3}}},"strict":true,"x":"y"},"cache_control":{"type":"ephemeral"},"z":[]}],
            "tool_choice":"required","parallel_tool_calls":false,"response_format":{"type":"json_object"},
            "reasoning_effort":"low","thinking":{"type":"enabled","budget_tokens":1024},
            "guardrailConfig":{"guardrailIdentifier":"g","guardrailVersion":"1","trace":"enabled"},
            "user":"u","seed":42,"logprobs":true,"metadata":{"k":"v"}}"#;
        let fast = decode(body).expect("the scan reads it");
        assert_eq!(Some(&fast), serde(body).as_ref());
        let ChatRequest {
            model,
            messages,
            stream,
            stream_options,
            max_completion_tokens,
            max_tokens,
            temperature,
            top_p,
            n,
            stop,
            tools,
            tool_choice,
            parallel_tool_calls,
            response_format,
            reasoning_effort,
            thinking,
            guardrail_config,
            user,
            extra,
        } = fast;
        assert!(!model.is_empty() && messages.len() == 6);
        let StreamOptions {
            include_usage,
            extra: options_extra,
        } = stream_options.unwrap();
        assert!(stream.is_some() && include_usage.is_some() && options_extra.len() == 1);
        assert!(max_completion_tokens.is_some() && max_tokens.is_some() && n.is_some());
        assert!(temperature.is_some() && top_p.is_some() && stop.is_some());
        assert!(tool_choice.is_some() && parallel_tool_calls.is_some());
        assert!(response_format.is_some() && reasoning_effort.is_some() && user.is_some());
        assert!(thinking.is_some() && guardrail_config.is_some());
        assert_eq!(extra.len(), 3, "{extra:?}");
        let Tool {
            kind,
            function,
            cache_control,
            extra,
        } = tools.unwrap().remove(0);
        assert!(kind == "function" && cache_control.is_some() && extra.len() == 1);
        let FunctionDefinition {
            name,
            description,
            parameters,
            strict,
            extra,
        } = function.unwrap();
        assert!(!name.is_empty() && description.is_some() && parameters.is_some());
        assert!(strict.is_some() && extra.len() == 1);
        let mut part_members = [0; 6];
        for message in messages {
            let Message {
                role: _,
                content,
                name: _,
                tool_calls,
                tool_call_id: _,
                cache_control: _,
                thinking_blocks,
                extra: _,
            } = message;
            assert!(thinking_blocks.is_none());
            let Some(MessageContent::Parts(parts)) = content else {
                continue;
            };
            for part in parts {
                let ContentPart {
                    kind,
                    text,
                    image_url,
                    file,
                    refusal,
                    cache_control,
                    extra,
                } = part;
                assert!(!kind.is_empty() && file.is_none());
                if let Some(ImageUrl { url, detail }) = image_url {
                    assert!(!url.is_empty());
                    part_members[0] += usize::from(detail.is_some());
                }
                if let Some(CacheControl { kind, ttl }) = cache_control {
                    assert!(!kind.is_empty());
                    part_members[1] += usize::from(ttl.is_some());
                }
                part_members[2] += usize::from(text.is_some());
                part_members[3] += usize::from(refusal.is_some());
                part_members[4] += extra.len();
                part_members[5] += 1;
            }
            for call in tool_calls.into_iter().flatten() {
                let ToolCall { id, kind, function } = call;
                let FunctionCall { name, arguments } = function;
                assert!(!id.is_empty() && !kind.is_empty() && !name.is_empty());
                assert!(!arguments.is_empty());
            }
        }
        assert_eq!(part_members, [1, 1, 1, 1, 1, 3]);
    }

    /// Numbers: what the scan reads, it reads as serde_json does; what it leaves (`-0`, long
    /// decimals, big exponents) goes to serde.
    #[test]
    fn numbers_read_as_serde_reads_them() {
        let read = [
            "0",
            "1",
            "7",
            "42",
            "4294967295",
            "18446744073709551615",
            "-1",
            "-9223372036854775808",
            "0.7",
            "0.1",
            "1.0",
            "2.5e-3",
            "1E2",
            "1e+22",
            "123456789012345",
            "0.000000000000001",
            "-0.0",
            "9.99",
            "3.141592653589793",
            "1e-22",
            "0e999",
            "0.30000000000000004",
        ];
        let mut decoded = 0;
        for n in read {
            for body in [
                format!(r#"{{"model":"m","messages":[],"x":{n}}}"#),
                format!(r#"{{"model":"m","messages":[],"temperature":{n}}}"#),
                format!(r#"{{"model":"m","messages":[],"max_tokens":{n}}}"#),
                format!(
                    r#"{{"model":"m","messages":[],"tools":[{{"type":"f","function":{{"name":"f","parameters":[{n}]}}}}]}}"#
                ),
            ] {
                let fast = decode(&body);
                decoded += usize::from(fast.is_some());
                if fast.is_some() {
                    assert_eq!(fast, serde(&body), "{body}");
                }
            }
        }
        // All but 0.30000000000000004 (its digits exceed 2^53) in three places, and the five u32s.
        assert_eq!(decoded, 21 * 3 + 5);
        for n in [
            "01", "1.", ".5", "-", "+1", "1e", "1e+", "--1", "0x1", "1.5.5", "NaN", "1ee2",
        ] {
            let body = format!(r#"{{"model":"m","messages":[],"x":{n}}}"#);
            assert_eq!(decode(&body), None, "{body}");
            assert_eq!(serde(&body), None, "{body}");
        }
        // Left to serde: it reads these, the scan would not read them the same way for sure.
        for n in [
            "-0",
            "1e23",
            "1234567890123456.5",
            "18446744073709551616",
            "1e1000",
        ] {
            let body = format!(r#"{{"model":"m","messages":[],"x":{n}}}"#);
            assert_eq!(decode(&body), None, "{body}");
        }
        // A u32 member refuses what is not one, as serde does.
        for n in ["4294967296", "-1", "1.0", "1e2"] {
            let body = format!(r#"{{"model":"m","messages":[],"n":{n}}}"#);
            assert_eq!(decode(&body), None, "{body}");
            assert_eq!(serde(&body), None, "{body}");
        }
    }

    /// serde's depth limit (128) counts a message's nesting from the top of the body: a message
    /// read by serde alone is wrapped to sit as deep, so it is refused exactly when the whole body
    /// would be.
    #[test]
    fn a_deep_message_is_refused_as_in_the_whole_body() {
        for depth in 120..130 {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"a","x":{}0{}}}]}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert_eq!(decode(&body), serde(&body), "nesting {depth}");
        }
        let deep = |d: usize| {
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"a","x":{}0{}}}]}}"#,
                "[".repeat(d),
                "]".repeat(d)
            )
        };
        assert!(decode(&deep(120)).is_some() && decode(&deep(129)).is_none());
    }

    /// A small deterministic generator (xorshift), so a failure names a reproducible case.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Mutated bodies: whatever the scan decodes, serde decodes to the same request. The seeds
    /// decode (two plain conversations, one with parts and tool calls, one with every kind of
    /// top-level member and number), so every mutation tests a decision.
    #[test]
    fn mutated_bodies_decode_as_serde_decodes_them_or_are_left_to_it() {
        let seeds = [
            r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"a_b","content":"Tell me \"why\"\n\\ please \u00e9\ud83d\ude00"}],"temperature":1,"max_tokens":64}"#,
            r#"{"messages":[{"role":"user","content":"Ελληνικά \/ text"},{"role":"assistant","content":"ok"},{"role":"user","content":"\t\u0041"}],"model":"m","stream":false,"extra":{"a":[1,2]}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a\n"}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"},"index":0}]},{"role":"tool","tool_call_id":"c","content":"r"},{"role":"user","content":"ok"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"q"}],"temperature":0.25,"top_p":1e-1,"n":3,"stop":["a"],"tool_choice":{"type":"function","function":{"name":"f"}},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"minimum":-12,"maximum":3.5E2}},"required":["x"]},"strict":false}}],"response_format":{"type":"json_object"},"stream_options":{"include_usage":true},"k\u00e9y":[true,false,null,-7,0.5]}"#,
        ];
        let alphabet = b"{}[]:,\"\\ u0dD8eE9afnrtbx/\t\x01.-+1";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut decoded, mut cases) = (0, 0);
        for seed in seeds {
            assert_eq!(decode(seed), serde(seed), "the seed itself: {seed}");
            assert!(decode(seed).is_some(), "the seed decodes: {seed}");
            for _ in 0..4000 {
                let mut bytes = seed.as_bytes().to_vec();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(bytes.len());
                    match rng.below(3) {
                        0 => bytes[at] = alphabet[rng.below(alphabet.len())],
                        1 => bytes.insert(at, alphabet[rng.below(alphabet.len())]),
                        _ => {
                            bytes.remove(at);
                        }
                    }
                }
                let Ok(body) = String::from_utf8(bytes) else {
                    continue;
                };
                cases += 1;
                if let Some(fast) = decode(&body) {
                    decoded += 1;
                    assert_eq!(Some(fast), serde(&body), "{body}");
                }
            }
        }
        // Both branches are exercised: many mutants stay plain, many do not.
        assert!(
            decoded > cases / 10 && decoded < cases * 9 / 10,
            "{decoded} of {cases}"
        );
    }
}
