//! A byte scan of JSON objects: the facts a pass-through relay needs (usage, finish, an event's
//! type) read from an upstream's bytes without decoding them.
//!
//! When the client reads the upstream's own format, its replies are relayed as the upstream wrote
//! them; the limiter, the log line and the metrics still need the usage, and a stream still has to
//! prove it finished. [`Members`] walks the members of one JSON object — keys and the raw bytes of
//! their values — skipping strings with `memchr` and nested values by bracket depth, with no tree
//! and no allocation (but for a key written with escapes: keys are read as serde_json reads them,
//! so `"us\u0061ge"` is the usage); the dialects' relays ([`claude_event`], [`titan_chunk`],
//! [`responses_event`], [`responses_object_usage`]) read what they need from it,
//! [`openai_chunk`] (every stream chunk) and [`openai_completion`] (every complete reply) walk
//! their nested members in one pass instead (`walk_object`, the usage read where the walk passes
//! it), and [`with_member`] splices one member's value (a rewritten `model`).
//!
//! Hand-written: serde_json's borrowed types and `RawValue` still validate and copy every value
//! (and `IgnoredAny` still unescapes strings), and a lazy-JSON crate would be a new dependency for
//! a few dozen lines. The scan checks the structure of the object it walks (each key a string, a
//! colon after it, members separated by commas, the object closed) and skips each value by its
//! extent: a string to its closing quote, a container to its matching bracket, a number or literal
//! to the next delimiter. It does not check what lies inside those extents — number syntax,
//! escapes (but a key's), control characters or UTF-8 in strings, commas and colons inside a
//! nested value — which the client's own parser does when it reads the relayed bytes: a malformed
//! upstream reply may be relayed as it came, as a bare proxy would relay it, where the translating
//! path answers 502.
//!
//! ```
//! use open_bedrock_server::format::scan::{openai_chunk, Members};
//!
//! let chunk = br#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}],
//!     "usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
//! let facts = openai_chunk(chunk).unwrap();
//! assert!(facts.finished && !facts.usage_only && !facts.error);
//! assert_eq!(facts.output_bytes, 2);
//! assert_eq!(facts.usage.unwrap().total_tokens, 7);
//!
//! let keys: Vec<_> = Members::of(br#" {"a": [1, {"b": "}"}], "c": null} "#)
//!     .map(|m| m.map(|(k, _)| k))
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(keys, [&b"a"[..], b"c"]);
//! assert!(Members::of(br#"{"a": "unterminated}"#).any(|m| m.is_err()));
//! ```

use std::borrow::Cow;

use crate::model::{PromptTokensDetails, Usage};

/// The scan found bytes that are not one well-formed JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a well-formed JSON object")
    }
}

impl std::error::Error for Malformed {}

/// A byte of 0x01 in every lane of a word: the word-wise searches below (`x * ONES` is `x` in
/// every lane).
const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// The high bit of every lane: where the word-wise tests flag a lane.
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// Whether `c` ends or escapes a plain run inside a JSON string: `"`, `\\`, or a control
/// character (which JSON requires escaped).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn is_string_special(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// The index of the first [special](is_string_special) byte of `b`: eight bytes at a time (a
/// byte below 0x20, `"` or `\\` sets its lane's high bit — the classic "has a zero byte" test,
/// whose lowest flagged lane is exact: a false flag only ever follows a true one), then byte by
/// byte in the last, partial word. The JSON log line's escaping runs on it (request detection finds
/// a string's end with [`quote_or_backslash`] and checks the text before it with
/// [`is_printable_ascii`]).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn string_special(b: &[u8]) -> Option<usize> {
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let mut lanes = [0; 8];
        lanes.copy_from_slice(word);
        let v = u64::from_le_bytes(lanes);
        let below_space = v.wrapping_sub(ONES * 0x20) & !v & HIGHS;
        let quote = zero_byte(v ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(v ^ (ONES * u64::from(b'\\')));
        let flagged = below_space | quote | backslash;
        if flagged != 0 {
            return Some(i + (flagged.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| is_string_special(c))
        .map(|p| i + p)
}

/// The key serde_json's `raw_value` feature gives a meaning: an object whose first key is this
/// one, read into a `Value`, stands for the JSON text in its string value (and a sorted map puts
/// it first wherever it was written). Detection refuses it; the OpenAI request scan leaves it to
/// serde.
pub(crate) const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// Whether every byte of `b` is ASCII at or above 0x20 (`0x20..=0x7f`, DEL included, which JSON
/// lets a string hold as it is): no control character, which a JSON string must escape, and
/// nothing that needs a UTF-8 check. The request scan runs it over every run of text between a
/// string's quotes and escapes, so it avoids byte loops: 32-byte blocks with no early exit inside
/// (the compiler turns each into a few vector compares), the last block overlapping the ones
/// before it; a run shorter than a block goes eight bytes at a time, the last word overlapping
/// too; only a run under eight bytes goes byte by byte.
pub(crate) fn is_printable_ascii(b: &[u8]) -> bool {
    let outside = |c: u8| c.wrapping_sub(0x20) >= 0x60;
    let block = |bytes: &[u8]| bytes.iter().fold(false, |any, &c| any | outside(c));
    // A lane below 0x20 (the "has a byte less than" test, exact for whether there is one) or
    // with its high bit set.
    let word = |bytes: &[u8]| {
        let mut lanes = [0; 8];
        lanes.copy_from_slice(bytes);
        let v = u64::from_le_bytes(lanes);
        ((v.wrapping_sub(ONES * 0x20) & !v) | v) & HIGHS != 0
    };
    let n = b.len();
    if n >= 32 {
        let mut blocks = b.chunks_exact(32);
        if blocks.any(block) {
            return false;
        }
        return n.is_multiple_of(32) || !block(&b[n - 32..]);
    }
    if n >= 8 {
        let mut words = b.chunks_exact(8);
        if words.any(word) {
            return false;
        }
        return n.is_multiple_of(8) || !word(&b[n - 8..]);
    }
    !b.iter().any(|&c| outside(c))
}

/// Whether `b` holds a control character (below 0x20), which a JSON string must escape: a fold
/// over every byte with no early exit, so the compiler makes it a few vector instructions per
/// block. Request detection and the OpenAI request scan run it on text that is not all printable
/// ASCII.
pub(crate) fn has_control(b: &[u8]) -> bool {
    b.iter().fold(false, |any, &c| any | (c < 0x20))
}

/// The `\u` escape whose backslash is at `b[at]`: its character and its length (6, or 12 for a
/// surrogate pair), or why serde_json refuses it (a short or non-hex escape; a UTF-16 surrogate
/// that is not a leading one followed by an escaped trailing one). Request detection checks
/// escapes with it and the OpenAI request scan decodes them.
pub(crate) fn unicode_escape(b: &[u8], at: usize) -> Result<(char, usize), &'static str> {
    let unit = |i: usize| -> Option<u32> {
        b.get(i + 2..i + 6)?
            .iter()
            .try_fold(0, |n, &d| Some(n * 16 + (d as char).to_digit(16)?))
    };
    match unit(at) {
        None => Err("invalid \\u escape"),
        Some(0xDC00..=0xDFFF) => Err("lone trailing surrogate"),
        Some(high @ 0xD800..=0xDBFF) => match (b.get(at + 6..at + 8), unit(at + 6)) {
            (Some([b'\\', b'u']), Some(low @ 0xDC00..=0xDFFF)) => {
                let c = char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00));
                c.map(|c| (c, 12)).ok_or("lone leading surrogate")
            }
            _ => Err("lone leading surrogate"),
        },
        Some(unit) => char::from_u32(unit)
            .map(|c| (c, 6))
            .ok_or("invalid \\u escape"),
    }
}

pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// The index of the first `"` or `\\` of `b`. Most strings a scan passes are keys and short
/// values, for which a call into `memchr2` cost more than the search: the first 32 bytes are
/// looked at eight at a time inline (the "has a zero byte" test of [`string_special`], whose
/// lowest flagged lane is exact), and only what lies beyond goes to `memchr2`'s vector search.
pub(crate) fn quote_or_backslash(b: &[u8]) -> Option<usize> {
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut i = 0;
    while i < 32 {
        let Some(word) = b.get(i..i + 8) else {
            let tail = b.get(i..)?;
            return tail
                .iter()
                .position(|&c| c == b'"' || c == b'\\')
                .map(|p| i + p);
        };
        let mut lanes = [0; 8];
        lanes.copy_from_slice(word);
        let v = u64::from_le_bytes(lanes);
        let hit =
            zero_byte(v ^ (ONES * u64::from(b'"'))) | zero_byte(v ^ (ONES * u64::from(b'\\')));
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr::memchr2(b'"', b'\\', b.get(i..)?).map(|p| i + p)
}

/// `b[i]` is the opening quote of a string: the index just past its closing quote.
pub(crate) fn skip_string(b: &[u8], i: usize) -> Result<usize, Malformed> {
    string_end(b, i).map(|(end, _)| end)
}

/// [`skip_string`], and whether the string has an escape.
#[inline]
fn string_end(b: &[u8], i: usize) -> Result<(usize, bool), Malformed> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        let k = j + quote_or_backslash(b.get(j..).ok_or(Malformed)?).ok_or(Malformed)?;
        if b[k] == b'"' {
            return Ok((k + 1, escaped));
        }
        escaped = true;
        j = k + 2; // an escape: skip the escaped byte (a `\uXXXX` tail has no quote or backslash)
    }
}

/// The key whose string starts at `b[i]` (its opening quote) as serde_json reads it: its bytes
/// between the quotes, unescaped when it has escapes (`"us\u0061ge"` is `usage`; an invalid
/// escape is `Malformed`), and the index just past it. Keys are short and escapes in them rare: the
/// plain key is borrowed, as written.
#[inline(always)]
fn key_at(b: &[u8], i: usize) -> Result<(Cow<'_, [u8]>, usize), Malformed> {
    let (end, escaped) = string_end(b, i)?;
    Ok((string_text(&b[i + 1..end - 1], escaped)?, end))
}

/// The inside of a string (`raw`, between its quotes) as serde_json reads it: borrowed when it has
/// no escapes, unescaped when it has.
#[inline(always)]
fn string_text(raw: &[u8], escaped: bool) -> Result<Cow<'_, [u8]>, Malformed> {
    if escaped {
        unescaped(raw).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// The inside of a string written with escapes, unescaped (out of line: the keys and event types
/// the scan reads rarely have escapes).
#[cold]
fn unescaped(raw: &[u8]) -> Result<Vec<u8>, Malformed> {
    unescape(raw).map(String::into_bytes).ok_or(Malformed)
}

/// The deepest nesting [`skip_value`] follows: an array or object inside 128 others is refused.
const MAX_DEPTH: usize = 128;

/// The index just past the value that starts at `b[i]`.
pub(crate) fn skip_value(b: &[u8], i: usize) -> Result<usize, Malformed> {
    skip_value_within(b, i, MAX_DEPTH)
}

/// [`skip_value`] for a value already inside containers: it may open at most `room` more levels
/// (a one-pass walk passes what its own levels left, so that its limit is the limit of a walk
/// that skipped the whole from the outside first).
fn skip_value_within(b: &[u8], i: usize, room: usize) -> Result<usize, Malformed> {
    match b.get(i).ok_or(Malformed)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            // Brackets by depth; strings skipped whole, so brackets inside them do not count.
            let mut stack = [0u8; MAX_DEPTH];
            let mut depth = 0usize;
            let mut j = i;
            loop {
                let c = *b.get(j).ok_or(Malformed)?;
                match c {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => {
                        if depth >= room {
                            return Err(Malformed);
                        }
                        *stack.get_mut(depth).ok_or(Malformed)? = c;
                        depth += 1;
                    }
                    b'}' | b']' => {
                        let open = if c == b'}' { b'{' } else { b'[' };
                        if depth == 0 || stack[depth - 1] != open {
                            return Err(Malformed);
                        }
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        // A number or a literal: up to the next delimiter.
        _ => scalar_end(b, i, |_| false),
    }
}

/// The string whose inside (between the quotes) is `raw`, unescaped by serde_json.
pub(crate) fn unescape(raw: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

/// One member of an object: its key (without quotes, unescaped as serde_json reads it: borrowed
/// unless it has escapes) and its value's raw bytes.
pub type Member<'a> = (Cow<'a, [u8]>, &'a [u8]);

/// The members of one JSON object: `(key, value)` pairs, the key without its quotes (unescaped,
/// so `"us\u0061ge"` is `usage`), the value's raw bytes. An `Err` item ends the walk: the bytes are
/// not an object.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    b: &'a [u8],
    i: usize,
    first: bool,
    /// `Some` once the walk is over (`Some(true)`: it failed and has not said so yet).
    over: Option<bool>,
}

impl<'a> Members<'a> {
    /// The members of the object `b` holds (surrounding whitespace allowed).
    pub fn of(b: &'a [u8]) -> Self {
        let i = skip_ws(b, 0);
        let ok = b.get(i) == Some(&b'{');
        Members {
            b,
            i: i + 1,
            first: true,
            over: (!ok).then_some(true),
        }
    }

    fn end(&mut self, close: usize) -> Result<Option<Member<'a>>, Malformed> {
        if skip_ws(self.b, close + 1) == self.b.len() {
            Ok(None)
        } else {
            Err(Malformed)
        }
    }

    fn step(&mut self) -> Result<Option<Member<'a>>, Malformed> {
        let b = self.b;
        let mut i = skip_ws(b, self.i);
        match (b.get(i), std::mem::replace(&mut self.first, false)) {
            (Some(b'}'), _) => return self.end(i),
            (Some(b','), false) => i = skip_ws(b, i + 1),
            (_, true) => {}
            _ => return Err(Malformed),
        }
        if b.get(i) != Some(&b'"') {
            return Err(Malformed);
        }
        let (key, key_end) = key_at(b, i)?;
        let colon = skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return Err(Malformed);
        }
        let start = skip_ws(b, colon + 1);
        let end = skip_value(b, start)?;
        self.i = end;
        Ok(Some((key, &b[start..end])))
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Result<Member<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.over {
            Some(true) => {
                self.over = Some(false);
                return Some(Err(Malformed));
            }
            Some(false) => return None,
            None => {}
        }
        match self.step() {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => {
                self.over = Some(false);
                None
            }
            Err(e) => {
                self.over = Some(false);
                Some(Err(e))
            }
        }
    }
}

/// What a one-pass walk does with one value: `Ok(Some(end))` when it read the value itself (the
/// index just past it), `Ok(None)` to have it skipped.
type Walked = Result<Option<usize>, Malformed>;

/// Walks the object that starts at `b[i]` in one pass, as [`Members`] reads it: `member(key, at,
/// room)` gets each key (unescaped, as [`Members`] gives it), where its value starts and the
/// nesting the value may still open (for [`walk_object`], [`walk_array`] or
/// [`skip_value_within`] on it). The index just past the object's `}`.
///
/// Where a value is walked into, [`Members`] then [`Members::of`] on it would pass its bytes twice
/// (the first time only to find its end): for a stream chunk's `choices`, three times (callgrind,
/// issue 18).
fn walk_object(
    b: &[u8],
    i: usize,
    room: usize,
    mut member: impl FnMut(&[u8], usize, usize) -> Walked,
) -> Result<usize, Malformed> {
    walk_container(b, i, room, (b'{', b'}'), |j, room| {
        if b.get(j) != Some(&b'"') {
            return Err(Malformed);
        }
        let (key, key_end) = key_at(b, j)?;
        let colon = skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return Err(Malformed);
        }
        let start = skip_ws(b, colon + 1);
        match member(&key, start, room)? {
            Some(end) => Ok(end),
            None => skip_walked(b, start, room),
        }
    })
}

/// Walks the array that starts at `b[i]` in one pass, as [`elements`] reads it: `element(at,
/// room)` as `member` is for [`walk_object`]. The index just past the array's `]`.
fn walk_array(
    b: &[u8],
    i: usize,
    room: usize,
    mut element: impl FnMut(usize, usize) -> Walked,
) -> Result<usize, Malformed> {
    walk_container(b, i, room, (b'[', b']'), |j, room| {
        match element(j, room)? {
            Some(end) => Ok(end),
            None => skip_walked(b, j, room),
        }
    })
}

/// The comma-separated items between `open` at `b[i]` and its `close`: `item(at, room)` reads the
/// item that starts at `at` and gives the index just past it. The index just past `close`.
fn walk_container(
    b: &[u8],
    i: usize,
    room: usize,
    (open, close): (u8, u8),
    mut item: impl FnMut(usize, usize) -> Result<usize, Malformed>,
) -> Result<usize, Malformed> {
    if room == 0 || b.get(i) != Some(&open) {
        return Err(Malformed);
    }
    let room = room - 1;
    let mut j = skip_ws(b, i + 1);
    if b.get(j) == Some(&close) {
        return Ok(j + 1);
    }
    loop {
        j = skip_ws(b, item(j, room)?);
        match b.get(j) {
            Some(b',') => j = skip_ws(b, j + 1),
            Some(&c) if c == close => return Ok(j + 1),
            _ => return Err(Malformed),
        }
    }
}

/// The value that starts at `b[at]`, skipped: its bytes and the index just past it.
fn value_at(b: &[u8], at: usize, room: usize) -> Result<(&[u8], usize), Malformed> {
    let end = skip_walked(b, at, room)?;
    Ok((&b[at..end], end))
}

/// [`skip_value_within`] for a value a one-pass walk passes, except that a number or literal also
/// ends at `{`, `[` or `"` (which then fails the walk). A walk that skipped a container whole
/// first read a bracket there as structure and refused the container; this walk refuses it too,
/// and also a quote there, which the walk before took into the literal. Both are not JSON; inside
/// a value that is skipped whole nothing changed. A reply's or chunk's `usage` is walked, so
/// this applies inside it too.
fn skip_walked(b: &[u8], at: usize, room: usize) -> Result<usize, Malformed> {
    match b.get(at).ok_or(Malformed)? {
        b'"' | b'{' | b'[' => skip_value_within(b, at, room),
        _ => scalar_end(b, at, |c| matches!(c, b'{' | b'[' | b'"')),
    }
}

/// The end of the number or literal at `b[i]`: the next delimiter (`,`, `}`, `]`, whitespace),
/// or the next byte `also` stops at; `Malformed` when that is `b[i]` itself.
fn scalar_end(b: &[u8], i: usize, also: impl Fn(u8) -> bool) -> Result<usize, Malformed> {
    let len = b
        .get(i..)
        .unwrap_or_default()
        .iter()
        .position(|&c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') || also(c))
        .unwrap_or(b.len() - i);
    if len == 0 {
        Err(Malformed)
    } else {
        Ok(i + len)
    }
}

/// The elements of a JSON array's raw bytes (each element's raw bytes).
pub fn elements(b: &[u8]) -> impl Iterator<Item = Result<&[u8], Malformed>> {
    let mut i = skip_ws(b, 0);
    let mut state = if b.get(i) == Some(&b'[') {
        i += 1;
        0u8 // first element
    } else {
        3 // error
    };
    std::iter::from_fn(move || match state {
        0 | 1 => {
            let mut j = skip_ws(b, i);
            match b.get(j) {
                Some(b']') => {
                    state = 2;
                    return None;
                }
                Some(b',') if state == 1 => j = skip_ws(b, j + 1),
                _ if state == 1 => {
                    state = 2;
                    return Some(Err(Malformed));
                }
                _ => {}
            }
            match skip_value(b, j) {
                Ok(end) => {
                    i = end;
                    state = 1;
                    Some(Ok(&b[j..end]))
                }
                Err(e) => {
                    state = 2;
                    Some(Err(e))
                }
            }
        }
        3 => {
            state = 2;
            Some(Err(Malformed))
        }
        _ => None,
    })
}

/// The length of a string value's contents as written (escapes counted as written), 0 for any
/// other value: what the output estimate counts.
fn string_len(v: &[u8]) -> usize {
    if v.len() >= 2 && v[0] == b'"' {
        v.len() - 2
    } else {
        0
    }
}

/// The one of `names` that the string value `v` (raw JSON) holds, its escapes read as serde_json
/// reads them; `None` for another string or a value that is not one.
fn event_name(v: &[u8], names: &[&'static str]) -> Option<&'static str> {
    if v.first() != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string_end(v, 0).ok()?;
    let text = string_text(v.get(1..end - 1).filter(|_| end == v.len())?, escaped).ok()?;
    names.iter().copied().find(|n| n.as_bytes() == &*text)
}

fn is_null(v: &[u8]) -> bool {
    v == b"null"
}

/// A non-negative integer value (`12`, `12.0` is not one; anything else is `None`): what
/// `u64::from_str` reads (a leading `+` too), from the bytes, without a UTF-8 check first.
fn integer(v: &[u8]) -> Option<u64> {
    let digits = v.strip_prefix(b"+").unwrap_or(v);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let d = d.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// What a relay learns from one OpenAI `chat.completion.chunk`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ChunkFacts {
    /// A choice finished (`finish_reason` not null).
    pub finished: bool,
    /// The chunk carries only the usage (`choices` empty): the one a client that did not ask for
    /// it never sees.
    pub usage_only: bool,
    /// The chunk is the upstream's in-band `{"error": …}`.
    pub error: bool,
    /// The final usage, when this chunk carries it.
    pub usage: Option<Usage>,
    /// Text, reasoning and tool-argument bytes: the estimate of a stream cut before its usage.
    pub output_bytes: usize,
}

/// Reads an OpenAI usage object.
pub fn openai_usage(v: &[u8]) -> Result<Usage, Malformed> {
    let mut usage = Usage::default();
    walk_whole(v, |at, room| walk_usage(v, at, room, &mut usage))?;
    Ok(usage)
}

/// Walks the one value `b` holds with `walk` (given where it starts and the nesting it may open),
/// surrounding whitespace allowed and nothing else after it. The value's own level does not count
/// against the nesting, as for [`Members`].
fn walk_whole(
    b: &[u8],
    walk: impl FnOnce(usize, usize) -> Result<usize, Malformed>,
) -> Result<(), Malformed> {
    let end = walk(skip_ws(b, 0), MAX_DEPTH + 1)?;
    if skip_ws(b, end) == b.len() {
        Ok(())
    } else {
        Err(Malformed)
    }
}

/// Reads the usage object that starts at `b[at]` into `usage`, in the walk that passes it (a
/// reply's or a chunk's): its bytes are passed once, not skipped first and then read. The index
/// just past it.
fn walk_usage(b: &[u8], at: usize, room: usize, usage: &mut Usage) -> Result<usize, Malformed> {
    walk_object(b, at, room, |k, at, room| {
        let count = match k {
            b"prompt_tokens" => &mut usage.prompt_tokens,
            b"completion_tokens" => &mut usage.completion_tokens,
            b"total_tokens" => &mut usage.total_tokens,
            b"prompt_tokens_details" | b"completion_tokens_details" => {
                let (v, end) = value_at(b, at, room)?;
                if !is_null(v) {
                    if k == b"prompt_tokens_details" {
                        usage.prompt_tokens_details = Some(prompt_tokens_details(v)?);
                    } else {
                        // Kept as written, as the typed decode keeps it: reasoning is priced
                        // from it.
                        usage.completion_tokens_details = serde_json::from_slice(v).ok();
                    }
                }
                return Ok(Some(end));
            }
            _ => return Ok(None),
        };
        let (v, end) = value_at(b, at, room)?;
        *count = integer(v).unwrap_or(0);
        Ok(Some(end))
    })
}

/// A usage's `prompt_tokens_details` object (cache reads and writes).
fn prompt_tokens_details(v: &[u8]) -> Result<PromptTokensDetails, Malformed> {
    let mut details = PromptTokensDetails::default();
    for m in Members::of(v) {
        let (k, v) = m?;
        match &*k {
            b"cached_tokens" => details.cached_tokens = integer(v),
            b"cache_write_tokens" => details.cache_write_tokens = integer(v),
            _ => {}
        }
    }
    Ok(details)
}

/// The `usage` member's value at `b[at]` in a walk, read into `usage` when it is an object; a
/// `null` leaves `usage` as it was (an earlier member's); anything else is not a usage. The index
/// just past it.
fn walk_usage_member(
    b: &[u8],
    at: usize,
    room: usize,
    usage: &mut Option<Usage>,
) -> Result<usize, Malformed> {
    if b.get(at) == Some(&b'{') {
        let mut read = Usage::default();
        let end = walk_usage(b, at, room, &mut read)?;
        *usage = Some(read);
        return Ok(end);
    }
    let (v, end) = value_at(b, at, room)?;
    if is_null(v) {
        Ok(end)
    } else {
        Err(Malformed)
    }
}

/// Reads the facts of one OpenAI stream chunk, in one pass over its bytes (surrounding whitespace
/// allowed).
pub fn openai_chunk(b: &[u8]) -> Result<ChunkFacts, Malformed> {
    let mut facts = ChunkFacts::default();
    let mut choices = 0usize;
    walk_whole(b, |at, room| {
        walk_object(b, at, room, |k, at, room| match k {
            b"choices" => walk_array(b, at, room, |at, room| {
                choices += 1;
                walk_object(b, at, room, |k, at, room| match k {
                    b"finish_reason" => {
                        let (v, end) = value_at(b, at, room)?;
                        facts.finished |= !is_null(v);
                        Ok(Some(end))
                    }
                    b"delta" => walk_object(b, at, room, |k, at, room| {
                        let (v, end) = value_at(b, at, room)?;
                        facts.output_bytes += match k {
                            b"content" | b"reasoning_content" => string_len(v),
                            // Arguments are inside; their JSON is close enough.
                            b"tool_calls" if !is_null(v) => v.len(),
                            _ => 0,
                        };
                        Ok(Some(end))
                    })
                    .map(Some),
                    _ => Ok(None),
                })
                .map(Some)
            })
            .map(Some),
            b"usage" => walk_usage_member(b, at, room, &mut facts.usage).map(Some),
            b"error" => {
                let (v, end) = value_at(b, at, room)?;
                facts.error |= !is_null(v);
                Ok(Some(end))
            }
            _ => Ok(None),
        })
    })?;
    facts.usage_only = choices == 0 && facts.usage.is_some();
    Ok(facts)
}

/// What a relay learns from a complete OpenAI `chat.completion`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CompletionFacts {
    /// Its usage.
    pub usage: Option<Usage>,
    /// Whether it names its model (an empty or missing `model` must be filled in: not relayed).
    pub has_model: bool,
}

/// Reads the facts of a complete OpenAI reply.
pub fn openai_completion(b: &[u8]) -> Result<CompletionFacts, Malformed> {
    let mut facts = CompletionFacts::default();
    // One pass, as for a chunk: `usage` read where the walk passes it.
    walk_whole(b, |at, room| {
        walk_object(b, at, room, |k, at, room| match k {
            b"usage" => walk_usage_member(b, at, room, &mut facts.usage).map(Some),
            b"model" => {
                let (v, end) = value_at(b, at, room)?;
                facts.has_model = string_len(v) > 0;
                Ok(Some(end))
            }
            _ => Ok(None),
        })
    })?;
    Ok(facts)
}

/// Anthropic's usage members (`input_tokens`, `output_tokens`, cache reads and writes) read into
/// `acc` (later events' counts win, as Claude's `message_delta` updates `output_tokens`).
fn claude_usage(v: &[u8], acc: &mut ClaudeUsage) -> Result<(), Malformed> {
    acc.update(counts(v, CLAUDE_USAGE)?);
    Ok(())
}

/// Anthropic's usage members, in the order of [`ClaudeUsage::update`]: input, output, cache read,
/// cache write.
const CLAUDE_USAGE: [&[u8]; 4] = [
    b"input_tokens",
    b"output_tokens",
    b"cache_read_input_tokens",
    b"cache_creation_input_tokens",
];

/// Bedrock's `amazon-bedrock-invocationMetrics` members, in the same order.
const INVOCATION_METRICS: [&[u8]; 4] = [
    b"inputTokenCount",
    b"outputTokenCount",
    b"cacheReadInputTokenCount",
    b"cacheWriteInputTokenCount",
];

/// The integer value of each member of the object `v` that `names` names, by position (the last
/// one when a member repeats; `None` when absent or not an integer).
fn counts(v: &[u8], names: [&[u8]; 4]) -> Result<[Option<u64>; 4], Malformed> {
    let mut out = [None; 4];
    for m in Members::of(v) {
        let (k, v) = m?;
        if let (Some(i), Some(n)) = (names.iter().position(|name| **name == *k), integer(v)) {
            out[i] = Some(n);
        }
    }
    Ok(out)
}

/// Token counts of a Claude message as its events report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaudeUsage {
    /// `input_tokens` (cache reads and writes excluded).
    pub input: u64,
    /// `output_tokens`.
    pub output: u64,
    /// `cache_read_input_tokens`.
    pub cache_read: u64,
    /// `cache_creation_input_tokens`.
    pub cache_write: u64,
}

impl ClaudeUsage {
    /// Each count that is `Some` replaces the one kept (input, output, cache read, cache write).
    fn update(&mut self, [input, output, read, write]: [Option<u64>; 4]) {
        self.input = input.unwrap_or(self.input);
        self.output = output.unwrap_or(self.output);
        self.cache_read = read.unwrap_or(self.cache_read);
        self.cache_write = write.unwrap_or(self.cache_write);
    }

    /// The canonical usage.
    pub fn usage(&self) -> Usage {
        Usage::from_parts(self.input, self.output, self.cache_read, self.cache_write)
    }
}

/// What a relay learns from one Claude stream event (an InvokeModel `chunk` payload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventFacts {
    /// The event's `type`, as the SSE `event:` line names it (`None` for a type this scan does not
    /// know: such an event is not relayed as is).
    pub name: Option<&'static str>,
    /// `message_stop`: the stream finished.
    pub finished: bool,
    /// The event is an `error`.
    pub error: bool,
    /// Text, thinking and tool-input bytes.
    pub output_bytes: usize,
}

/// The Anthropic stream event types, by name.
const CLAUDE_EVENTS: [&str; 8] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
];

/// Reads the facts of one Claude stream event, adding its token counts to `usage` where the
/// canonical decoder reads them: `message.usage` on `message_start`, `usage` on `message_delta`,
/// Bedrock's invocation metrics on `message_stop`. A `null` member is an absent one, as the typed
/// decode reads it.
pub fn claude_event(b: &[u8], usage: &mut ClaudeUsage) -> Result<EventFacts, Malformed> {
    let mut facts = EventFacts::default();
    let (mut message, mut event_usage, mut metrics) = (None, None, None);
    for m in Members::of(b) {
        let (k, v) = m?;
        match &*k {
            b"type" => facts.name = event_name(v, &CLAUDE_EVENTS),
            b"message" if !is_null(v) => message = Some(v),
            b"usage" if !is_null(v) => event_usage = Some(v),
            b"amazon-bedrock-invocationMetrics" if !is_null(v) => metrics = Some(v),
            b"delta" if !is_null(v) => {
                for m in Members::of(v) {
                    let (k, v) = m?;
                    if matches!(&*k, b"text" | b"thinking" | b"partial_json") {
                        facts.output_bytes += string_len(v);
                    }
                }
            }
            _ => {}
        }
    }
    match facts.name {
        Some("message_start") => {
            for m in message.into_iter().flat_map(Members::of) {
                let (k, v) = m?;
                if *k == *b"usage" && !is_null(v) {
                    claude_usage(v, usage)?;
                }
            }
        }
        Some("message_delta") => {
            if let Some(v) = event_usage {
                claude_usage(v, usage)?;
            }
        }
        // Bedrock's invocation metrics win over the events' own counts, as in the canonical
        // decoder: `message_start`'s input count may be a placeholder.
        Some("message_stop") => {
            if let Some(v) = metrics {
                usage.update(counts(v, INVOCATION_METRICS)?);
            }
        }
        _ => {}
    }
    facts.finished = facts.name == Some("message_stop");
    facts.error = facts.name == Some("error");
    Ok(facts)
}

/// Reads the facts of one Titan stream chunk: `completionReason` set finishes it, and its counts
/// (`inputTextTokenCount` on the first chunk, `totalOutputTextTokenCount` running, Bedrock's
/// `amazon-bedrock-invocationMetrics` on the last winning over both) go into `usage` (input,
/// output).
pub fn titan_chunk(b: &[u8], usage: &mut (u64, u64)) -> Result<EventFacts, Malformed> {
    let mut facts = EventFacts::default();
    let mut metrics = None;
    for m in Members::of(b) {
        let (k, v) = m?;
        match &*k {
            b"outputText" => facts.output_bytes += string_len(v),
            b"completionReason" if !is_null(v) => facts.finished = true,
            b"inputTextTokenCount" => usage.0 = integer(v).unwrap_or(usage.0),
            b"totalOutputTextTokenCount" => usage.1 = integer(v).unwrap_or(usage.1),
            b"amazon-bedrock-invocationMetrics" if !is_null(v) => metrics = Some(v),
            _ => {}
        }
    }
    // The metrics count on the last chunk (the one with `completionReason`), as the canonical
    // decoder reads them.
    if let (true, Some(v)) = (facts.finished, metrics) {
        let [input, output, ..] = counts(v, INVOCATION_METRICS)?;
        usage.0 = input.unwrap_or(usage.0);
        usage.1 = output.unwrap_or(usage.1);
    }
    Ok(facts)
}

/// The usage of a complete Claude message (`usage` member).
pub fn claude_message_usage(b: &[u8]) -> Result<Option<Usage>, Malformed> {
    let mut acc = ClaudeUsage::default();
    let mut found = false;
    for m in Members::of(b) {
        let (k, v) = m?;
        if *k == *b"usage" && !is_null(v) {
            claude_usage(v, &mut acc)?;
            found = true;
        }
    }
    Ok(found.then(|| acc.usage()))
}

/// The usage of a complete Titan reply (`inputTextTokenCount`, the results' `tokenCount`s).
pub fn titan_result_usage(b: &[u8]) -> Result<Option<Usage>, Malformed> {
    let (mut input, mut output, mut found) = (0, 0, false);
    for m in Members::of(b) {
        let (k, v) = m?;
        match &*k {
            b"inputTextTokenCount" => {
                input = integer(v).unwrap_or(0);
                found = true;
            }
            b"results" => {
                for r in elements(v) {
                    for m in Members::of(r?) {
                        let (k, v) = m?;
                        if *k == *b"tokenCount" {
                            output = integer(v).unwrap_or(0).saturating_add(output);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found.then(|| Usage::from_parts(input, output, 0, 0)))
}

/// `b` (one JSON object) with every top-level member named `key` (an escaped spelling of it
/// included) holding `value` (raw JSON), every other byte as it was: a reader that takes a
/// repeated member's first occurrence and one that takes its last (serde_json's map, which the
/// gateway's own decode uses) both read `value`. One walk; `b` itself, not a copy, when every
/// such member already holds `value` as written. `None` when `b` is malformed or has no such
/// member.
pub fn with_member(b: &bytes::Bytes, key: &str, value: &[u8]) -> Option<bytes::Bytes> {
    let (mut out, mut copied, mut found) = (None::<Vec<u8>>, 0, false);
    for m in Members::of(b) {
        let (k, v) = m.ok()?;
        if *k != *key.as_bytes() {
            continue;
        }
        found = true;
        if v == value {
            continue;
        }
        // `v` is a slice of `b`: its offset is the distance between their starts.
        let start = (v.as_ptr() as usize).checked_sub(b.as_ptr() as usize)?;
        let out = out.get_or_insert_with(|| Vec::with_capacity(b.len() + value.len()));
        out.extend_from_slice(&b[copied..start]);
        out.extend_from_slice(value);
        copied = start + v.len();
    }
    match (found, out) {
        (false, _) => None,
        (true, None) => Some(b.clone()),
        (true, Some(mut out)) => {
            out.extend_from_slice(&b[copied..]);
            Some(out.into())
        }
    }
}

/// Reads a Responses API usage object (`input_tokens` with `input_tokens_details.cached_tokens`,
/// `output_tokens` with `output_tokens_details.reasoning_tokens`) as the canonical usage.
pub fn responses_usage(v: &[u8]) -> Result<Usage, Malformed> {
    let (mut input, mut output, mut cached, mut reasoning) = (0, 0, 0, None);
    for m in Members::of(v) {
        let (k, v) = m?;
        match &*k {
            b"input_tokens" => input = integer(v).unwrap_or(0),
            b"output_tokens" => output = integer(v).unwrap_or(0),
            b"input_tokens_details" if !is_null(v) => {
                for m in Members::of(v) {
                    let (k, v) = m?;
                    if *k == *b"cached_tokens" {
                        cached = integer(v).unwrap_or(0);
                    }
                }
            }
            b"output_tokens_details" if !is_null(v) => {
                for m in Members::of(v) {
                    let (k, v) = m?;
                    if *k == *b"reasoning_tokens" {
                        reasoning = integer(v);
                    }
                }
            }
            _ => {}
        }
    }
    // `input_tokens` counts the cached ones, as `prompt_tokens` does.
    let mut usage = Usage::from_parts(input.saturating_sub(cached), output, cached, 0);
    if let Some(r) = reasoning.filter(|r| *r > 0) {
        usage.completion_tokens_details = Some(serde_json::json!({ "reasoning_tokens": r }));
    }
    Ok(usage)
}

/// The usage of a Responses API Response object (its top-level `usage`), if it has one.
pub fn responses_object_usage(b: &[u8]) -> Result<Option<Usage>, Malformed> {
    let mut usage = None;
    for m in Members::of(b) {
        let (k, v) = m?;
        if *k == *b"usage" && !is_null(v) {
            usage = Some(responses_usage(v)?);
        }
    }
    Ok(usage)
}

/// Event types of the Responses API stream, as the SSE `event:` line names them.
const RESPONSES_EVENTS: &[&str] = &[
    "response.created",
    "response.in_progress",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "response.queued",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_text.annotation.added",
    "response.refusal.delta",
    "response.refusal.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_text.delta",
    "response.reasoning_text.done",
    "response.web_search_call.in_progress",
    "response.web_search_call.searching",
    "response.web_search_call.completed",
    "response.file_search_call.in_progress",
    "response.file_search_call.searching",
    "response.file_search_call.completed",
    "response.code_interpreter_call.in_progress",
    "response.code_interpreter_call.interpreting",
    "response.code_interpreter_call.completed",
    "response.image_generation_call.in_progress",
    "response.image_generation_call.generating",
    "response.image_generation_call.partial_image",
    "response.image_generation_call.completed",
    "error",
];

/// What a relay learns from one Responses API stream event.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ResponsesEventFacts {
    /// The event's `type` (`None` for a type this scan does not name: relayed as data only).
    pub name: Option<&'static str>,
    /// The response ended: `response.completed`, `response.incomplete`, `response.failed` or an
    /// `error` event.
    pub finished: bool,
    /// The usage of the final response, on the event that ends it.
    pub usage: Option<Usage>,
    /// Text and tool-argument delta bytes: the estimate of a stream cut before its usage.
    pub output_bytes: usize,
}

/// Reads the facts of one Responses API stream event.
pub fn responses_event(b: &[u8]) -> Result<ResponsesEventFacts, Malformed> {
    let mut facts = ResponsesEventFacts::default();
    let mut response = None;
    let mut delta = 0;
    for m in Members::of(b) {
        let (k, v) = m?;
        match &*k {
            b"type" => facts.name = event_name(v, RESPONSES_EVENTS),
            b"response" => response = Some(v),
            b"delta" => delta = string_len(v),
            _ => {}
        }
    }
    match facts.name {
        Some("response.completed" | "response.incomplete" | "response.failed") => {
            facts.finished = true;
            if let Some(r) = response {
                facts.usage = responses_object_usage(r)?;
            }
        }
        Some("error") => facts.finished = true,
        Some("response.output_text.delta" | "response.function_call_arguments.delta") => {
            facts.output_bytes = delta;
        }
        _ => {}
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every lane of a word and in the tail: the word-wise search finds the
    /// first special byte the byte-wise rule finds.
    #[test]
    fn string_special_finds_the_first_special_byte() {
        for len in [1, 7, 8, 9, 16, 17] {
            for at in 0..len {
                for b in 0..=0xff_u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let expected = bytes.iter().position(|&c| is_string_special(c));
                    assert_eq!(string_special(&bytes), expected, "{b:#x} at {at} of {len}");
                }
            }
        }
        let mut two = vec![b'x'; 20];
        two[11] = b'\\';
        two[13] = b'"';
        assert_eq!(string_special(&two), Some(11));
        assert_eq!(string_special(b""), None);
        let mut high = "é".repeat(9).into_bytes();
        assert_eq!(
            string_special(&high),
            None,
            "bytes over 0x7f are never special"
        );
        high[5] = b'"';
        assert_eq!(string_special(&high), Some(5));
    }

    /// Every byte value at every place of a block, of the tail after blocks, and of a body
    /// shorter than one block: only bytes 0x20 to 0x7f are printable ASCII.
    #[test]
    fn printable_ascii_is_checked_in_blocks_and_tail() {
        assert!(is_printable_ascii(b""));
        for len in [1, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 70] {
            assert!(is_printable_ascii(&vec![b'~'; len]));
            for at in 0..len {
                for b in 0..=0xff_u8 {
                    let mut bytes = vec![b' '; len];
                    bytes[at] = b;
                    let printable = (0x20..=0x7f).contains(&b);
                    assert_eq!(
                        is_printable_ascii(&bytes),
                        printable,
                        "{b:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    /// The inline search and `memchr2` past it find the first quote or backslash wherever it is,
    /// with a near byte (`!`, `#`, `|`, NUL, bytes above 0x7f) in its place, and with a quote or
    /// backslash at the end behind it.
    #[test]
    fn quote_or_backslash_finds_the_first_of_either() {
        for len in [0, 1, 7, 8, 9, 31, 32, 33, 40, 41, 100] {
            let plain = vec![b'a'; len];
            assert_eq!(quote_or_backslash(&plain), None, "none in {len}");
            for at in 0..len {
                for b in [b'"', b'\\', b'!', b'#', b'|', b'\0', 0xa2, 0xdc] {
                    for after in [None, Some(b'"'), Some(b'\\')] {
                        let mut bytes = vec![b'a'; len];
                        bytes[at] = b;
                        if let Some(a) = after {
                            if let Some(last) = bytes.last_mut().filter(|_| at + 1 < len) {
                                *last = a;
                            }
                        }
                        let expected = bytes.iter().position(|&c| c == b'"' || c == b'\\');
                        assert_eq!(
                            quote_or_backslash(&bytes),
                            expected,
                            "{b:#x} at {at} of {len}"
                        );
                    }
                }
            }
        }
    }

    fn keys(b: &[u8]) -> Result<Vec<String>, Malformed> {
        Members::of(b)
            .map(|m| m.map(|(k, _)| String::from_utf8_lossy(&k).into_owned()))
            .collect()
    }

    /// An event's `type` is read as serde_json reads it, escapes and all; a type that is not a
    /// valid string names no event.
    #[test]
    fn an_event_type_with_escapes_names_its_event() {
        let mut usage = ClaudeUsage::default();
        let facts = claude_event(br#"{"type":"message\u005fstop"}"#, &mut usage).unwrap();
        assert_eq!(facts.name, Some("message_stop"));
        assert!(facts.finished);
        let completed =
            br#"{"type":"response\u002Ecompleted","response":{"usage":{"input_tokens":2}}}"#;
        let facts = responses_event(completed).unwrap();
        assert_eq!(facts.name, Some("response.completed"));
        assert_eq!(facts.usage.unwrap().prompt_tokens, 2);
        for odd in [
            &br#"{"type":"message_stop\x"}"#[..],
            br#"{"type":7}"#,
            br#"{"type":"\""}"#,
        ] {
            assert_eq!(claude_event(odd, &mut usage).unwrap().name, None);
        }
    }

    #[test]
    fn members_and_malformed_objects() {
        assert_eq!(keys(b"{}").unwrap(), Vec::<String>::new());
        assert_eq!(keys(b" { } ").unwrap(), Vec::<String>::new());
        assert_eq!(
            keys(br#"{"a":"x\"}","b":{"c":[1,"]"]},"d":-1.5e3,"e":true}"#).unwrap(),
            ["a", "b", "d", "e"]
        );
        // Keys as serde_json reads them: unescaped.
        assert_eq!(
            keys(br#"{"us\u0061ge":1,"a\"b":2,"\u00e9":3}"#).unwrap(),
            ["usage", "a\"b", "\u{e9}"]
        );
        let reply = br#"{"model":"m","choices":[],"\u0075sage":{"prompt_tokens":3}}"#;
        assert_eq!(
            openai_completion(reply)
                .unwrap()
                .usage
                .unwrap()
                .prompt_tokens,
            3
        );
        for bad in [&br#"{"a\x":1}"#[..], br#"{"choices":[],"\ud800":1}"#] {
            assert!(keys(bad).is_err(), "{}", String::from_utf8_lossy(bad));
            assert!(
                openai_completion(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":[1}",
            b"{\"a\":\"x}",
            b"{\"a\":1} x",
            b"{,\"a\":1}",
            b"{\"a\":1 \"b\":2}",
        ] {
            assert!(keys(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let els: Vec<_> = elements(br#"[1, {"a":[2]}, "x"]"#)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(els, [&b"1"[..], br#"{"a":[2]}"#, br#""x""#]);
        assert_eq!(elements(b"[]").count(), 0);
        assert!(elements(b"[1 2]").any(|e| e.is_err()));
    }

    /// `openai_chunk` as it was before the one-pass walk, through `Members` and `elements`: the
    /// reference the one-pass walk must agree with.
    fn openai_chunk_by_members(b: &[u8]) -> Result<ChunkFacts, Malformed> {
        let mut facts = ChunkFacts::default();
        let mut choices = 0usize;
        for m in Members::of(b) {
            let (k, v) = m?;
            match &*k {
                b"choices" => {
                    for choice in elements(v) {
                        choices += 1;
                        for m in Members::of(choice?) {
                            let (k, v) = m?;
                            match &*k {
                                b"finish_reason" if !is_null(v) => facts.finished = true,
                                b"delta" => {
                                    for m in Members::of(v) {
                                        let (k, v) = m?;
                                        facts.output_bytes += match &*k {
                                            b"content" | b"reasoning_content" => string_len(v),
                                            // Arguments are inside; their JSON is close enough.
                                            b"tool_calls" if !is_null(v) => v.len(),
                                            _ => 0,
                                        };
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                b"usage" if !is_null(v) => facts.usage = Some(openai_usage_by_members(v)?),
                b"error" if !is_null(v) => facts.error = true,
                _ => {}
            }
        }
        facts.usage_only = choices == 0 && facts.usage.is_some();
        Ok(facts)
    }

    /// `openai_usage` as it was before usage was read in the walk that passes it, through
    /// `Members`: the reference for that walk.
    fn openai_usage_by_members(v: &[u8]) -> Result<Usage, Malformed> {
        let mut usage = Usage::default();
        for m in Members::of(v) {
            let (k, v) = m?;
            match &*k {
                b"prompt_tokens" => usage.prompt_tokens = integer(v).unwrap_or(0),
                b"completion_tokens" => usage.completion_tokens = integer(v).unwrap_or(0),
                b"total_tokens" => usage.total_tokens = integer(v).unwrap_or(0),
                b"prompt_tokens_details" if !is_null(v) => {
                    usage.prompt_tokens_details = Some(prompt_tokens_details(v)?);
                }
                b"completion_tokens_details" if !is_null(v) => {
                    usage.completion_tokens_details = serde_json::from_slice(v).ok();
                }
                _ => {}
            }
        }
        Ok(usage)
    }

    /// `openai_completion` as it was before its one-pass walk, through `Members`.
    fn openai_completion_by_members(b: &[u8]) -> Result<CompletionFacts, Malformed> {
        let mut facts = CompletionFacts::default();
        for m in Members::of(b) {
            let (k, v) = m?;
            match &*k {
                b"usage" if !is_null(v) => facts.usage = Some(openai_usage_by_members(v)?),
                b"model" => facts.has_model = string_len(v) > 0,
                _ => {}
            }
        }
        Ok(facts)
    }

    /// Calls `check` on `seed` with every byte deleted, replaced by, or preceded by each of a set
    /// of JSON's own bytes, and cut at every length.
    fn mutations(seed: &[u8], mut check: impl FnMut(&[u8])) {
        let bytes = b"{}[]\",: \\0an-";
        for at in 0..=seed.len() {
            check(&seed[..at]);
            if at < seed.len() {
                check(&[&seed[..at], &seed[at + 1..]].concat());
            }
            for &c in bytes {
                check(&[&seed[..at], &[c], &seed[at..]].concat());
                if at < seed.len() {
                    check(&[&seed[..at], &[c], &seed[at + 1..]].concat());
                }
            }
        }
    }

    /// `depth` arrays nested in one another.
    fn nest(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    /// Checks that a one-pass walk (`now`) reads each seed, each of its [`mutations`] and each of
    /// `nested` as the walk through `Members` (`before`) did: the same facts, or `Malformed` for
    /// the same bytes, stricter only on what is not JSON (a bracket or quote inside a number or
    /// literal, nesting past the limit). How many it checked.
    fn agrees_with_members<T: PartialEq + std::fmt::Debug>(
        seeds: &[&[u8]],
        nested: &[String],
        now: impl Fn(&[u8]) -> Result<T, Malformed>,
        before: impl Fn(&[u8]) -> Result<T, Malformed>,
    ) -> usize {
        let mut checked = 0usize;
        let mut check = |b: &[u8]| {
            let (now, before) = (now(b), before(b));
            if now != before {
                assert!(
                    now.is_err() && serde_json::from_slice::<serde_json::Value>(b).is_err(),
                    "{}: {now:?}, before {before:?}",
                    String::from_utf8_lossy(b)
                );
            }
            checked += 1;
        };
        for &seed in seeds {
            assert!(now(seed).is_ok(), "{}", String::from_utf8_lossy(seed));
            mutations(seed, &mut check);
        }
        for b in nested {
            check(b.as_bytes());
        }
        checked
    }

    /// A usage object read on its own (`openai_usage`: surrounding whitespace, trailing bytes, its
    /// own level) as `Members` read it.
    #[test]
    fn a_usage_read_by_the_walk_agrees_with_members() {
        let seeds: [&[u8]; 3] = [
            br#" {"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4,"cache_write_tokens":1},"completion_tokens_details":{"reasoning_tokens":2}} "#,
            b"{}",
            br#"{"prompt_tokens":null,"prompt_tokens_details":null,"x":[{"y":"}"}],"total_tokens":-1}"#,
        ];
        let nested: Vec<String> = (120..=132)
            .map(|depth| format!(r#"{{"x":{}}}"#, nest(depth)))
            .collect();
        let checked = agrees_with_members(&seeds, &nested, openai_usage, openai_usage_by_members);
        assert!(checked > 3_000, "{checked}");
        let usage = openai_usage(seeds[0]).unwrap();
        assert_eq!((usage.prompt_tokens, usage.cached_tokens()), (9, 4));
    }

    /// The one-pass walk of a complete reply reads every reply as the walk through `Members`
    /// did: the same facts, or `Malformed` for the same replies, stricter only on what is not
    /// JSON (as for chunks below). Seeds as OpenAI and others write replies, mutated as
    /// [`mutations`] does, and usage nested at the depth limit and past it.
    #[test]
    fn the_one_pass_completion_walk_reads_replies_as_members_did() {
        let seeds: [&[u8]; 5] = [
            br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"x\"","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"accepted_prediction_tokens":0}},"system_fingerprint":"fp"}"#,
            br#"{"model":"m","usage":null}"#,
            br#" { "usage" : { "total_tokens" : 1 } , "model" : "" , "usage" : null } "#,
            br#"{"usage":{"prompt_tokens":1},"usage":{"completion_tokens":2,"prompt_tokens_details":null},"model":"m"}"#,
            br#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"{\"a\":[1]}"}}]}}],"model":"m"}"#,
        ];
        let nested: Vec<String> = (120..=132)
            .map(|depth| format!(r#"{{"model":"m","usage":{{"x":{}}}}}"#, nest(depth)))
            .collect();
        let checked = agrees_with_members(
            &seeds,
            &nested,
            openai_completion,
            openai_completion_by_members,
        );
        assert!(checked > 10_000, "{checked}");
        // The facts themselves, on the first seed.
        let facts = openai_completion(seeds[0]).unwrap();
        assert!(facts.has_model);
        let usage = facts.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (9, 3, 12)
        );
    }

    /// The one-pass chunk walk reads every chunk as the walk through `Members` did: the same
    /// facts, or `Malformed` for the same chunks. Each seed (chunks as OpenAI and others write
    /// them) with every byte deleted, replaced by, or preceded by each of a set of JSON's own
    /// bytes, and cut at every length; and nesting at the depth limit and past it.
    #[test]
    fn the_one_pass_chunk_walk_reads_chunks_as_members_did() {
        let seeds: [&[u8]; 8] = [
            br#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
            br#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hi \"there\"\n"},"finish_reason":null}],"usage":null}"#,
            br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}]}"#,
            br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#,
            br#"{"error":{"message":"boom","type":"server_error"}}"#,
            br#" { "choices" : [ { "delta" : { "reasoning_content" : "hm" } , "finish_reason" : "stop" } , { "delta" : { } } ] , "error" : null } "#,
            br#"{"choices":[{"delta":{"content":"x"},"logprobs":{"content":[{"token":"x","top_logprobs":[[1,[2]],{"a":[]}]}]},"finish_reason":null}]}"#,
            br#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"bc"},"finish_reason":"length"}],"choices":[{"delta":{}}]}"#,
        ];
        // Nested `logprobs` and `tool_calls` around the depth limit (the chunk's own braces do
        // not count; `choices`, its element and `delta` do).
        let nested: Vec<String> = (120..=132)
            .flat_map(|depth| {
                [
                    format!(r#"{{"choices":[{{"logprobs":{}}}]}}"#, nest(depth)),
                    format!(
                        r#"{{"choices":[{{"delta":{{"tool_calls":{}}}}}]}}"#,
                        nest(depth)
                    ),
                    format!(
                        r#"{{"usage":{{"x":{}}},"other":{}}}"#,
                        nest(depth),
                        nest(depth)
                    ),
                ]
            })
            .collect();
        let checked = agrees_with_members(&seeds, &nested, openai_chunk, openai_chunk_by_members);
        assert!(checked > 25_000, "{checked}");
    }

    /// `integer` reads what `u64::from_str` reads, and nothing else.
    #[test]
    fn integers_are_read_as_from_str_reads_them() {
        let mut cases: Vec<Vec<u8>> = [
            "",
            "0",
            "7",
            "+7",
            "+",
            "-0",
            "-7",
            "007",
            "12.0",
            "1e3",
            " 1",
            "1 ",
            "++1",
            "+-1",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "0x10",
            "١",
        ]
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
        cases.push(vec![b'1', 0xff]);
        for b in 0..=0xff_u8 {
            cases.push(vec![b]);
            cases.push(vec![b'4', b]);
        }
        for case in cases {
            let expected = std::str::from_utf8(&case)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            assert_eq!(integer(&case), expected, "{case:?}");
        }
    }

    #[test]
    fn openai_facts() {
        let f = openai_chunk(
            br#"{"choices":[{"delta":{"content":null},"finish_reason":null}],"usage":null}"#,
        )
        .unwrap();
        assert_eq!(f, ChunkFacts::default());
        let f = openai_chunk(br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":2}}}"#).unwrap();
        assert!(f.usage_only);
        let u = f.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens()),
            (3, 4, 2)
        );
        assert!(openai_chunk(br#"{"error":{"message":"x"}}"#).unwrap().error);
        let f = openai_completion(br#"{"model":"","usage":{"total_tokens":1}}"#).unwrap();
        assert!(!f.has_model && f.usage.is_some());
    }

    #[test]
    fn claude_and_titan_facts() {
        let mut u = ClaudeUsage::default();
        let f = claude_event(br#"{"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1,"cache_read_input_tokens":3}}}"#, &mut u).unwrap();
        assert_eq!(f.name, Some("message_start"));
        let f = claude_event(br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"word "}}"#, &mut u).unwrap();
        assert_eq!(f.output_bytes, 5);
        claude_event(br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#, &mut u).unwrap();
        let f = claude_event(br#"{"type":"message_stop"}"#, &mut u).unwrap();
        assert!(f.finished);
        assert_eq!((u.input, u.output, u.cache_read), (12, 9, 3));
        assert_eq!(
            claude_event(br#"{"type":"new_kind"}"#, &mut u)
                .unwrap()
                .name,
            None
        );

        let mut t = (0, 0);
        titan_chunk(br#"{"outputText":"Hi","index":0,"totalOutputTextTokenCount":1,"completionReason":null,"inputTextTokenCount":8}"#, &mut t).unwrap();
        let f = titan_chunk(br#"{"outputText":"","completionReason":"FINISH","inputTextTokenCount":null,"totalOutputTextTokenCount":6}"#, &mut t).unwrap();
        assert!(f.finished);
        assert_eq!(t, (8, 6));
        let u = titan_result_usage(
            br#"{"inputTextTokenCount":8,"results":[{"tokenCount":6,"outputText":"x"}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (8, 6));
        let u =
            claude_message_usage(br#"{"id":"m","usage":{"input_tokens":12,"output_tokens":9}}"#)
                .unwrap()
                .unwrap();
        assert_eq!(u.total_tokens, 21);
    }

    #[test]
    fn bedrock_invocation_metrics_win_over_the_events_counts() {
        let mut u = ClaudeUsage::default();
        claude_event(
            br#"{"type":"message_start","message":{"usage":{"input_tokens":1,"output_tokens":1}}}"#,
            &mut u,
        )
        .unwrap();
        claude_event(br#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":3}}"#, &mut u).unwrap();
        // As the canonical decoder reads them (its `invocation_metrics_win_and_cache_write_counts`).
        let f = claude_event(
            br#"{"amazon-bedrock-invocationMetrics":{"inputTokenCount":20,"outputTokenCount":4,
            "cacheReadInputTokenCount":5,"cacheWriteInputTokenCount":6},"type":"message_stop"}"#,
            &mut u,
        )
        .unwrap();
        assert!(f.finished);
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write),
            (20, 4, 5, 6)
        );
        // Absent counts keep the events' own.
        let mut u = ClaudeUsage {
            input: 7,
            output: 2,
            cache_read: 1,
            cache_write: 0,
        };
        claude_event(
            br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"outputTokenCount":9}}"#,
            &mut u,
        )
        .unwrap();
        assert_eq!((u.input, u.output, u.cache_read), (7, 9, 1));

        let mut t = (0, 0);
        titan_chunk(
            br#"{"outputText":"Hi","totalOutputTextTokenCount":1,"inputTextTokenCount":8}"#,
            &mut t,
        )
        .unwrap();
        let f = titan_chunk(
            br#"{"amazon-bedrock-invocationMetrics":{"inputTokenCount":10,"outputTokenCount":7},
            "outputText":"","completionReason":"FINISH","totalOutputTextTokenCount":6}"#,
            &mut t,
        )
        .unwrap();
        assert!(f.finished);
        assert_eq!(t, (10, 7));
        assert!(titan_chunk(
            br#"{"amazon-bedrock-invocationMetrics":{"inputTokenCount":1,}"#,
            &mut t
        )
        .is_err());
    }

    #[test]
    fn responses_usage_events_and_a_spliced_member() {
        let completed = br#"{"type":"response.completed","sequence_number":9,"response":{"id":"r","output":[{"type":"message","content":[{"type":"output_text","text":"}{"}]}],
            "usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":5},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":29}}}"#;
        let facts = responses_event(completed).unwrap();
        assert_eq!(facts.name, Some("response.completed"));
        assert!(facts.finished);
        let u = facts.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (20, 9, 29)
        );
        assert_eq!(u.cached_tokens(), 5);
        assert_eq!(u.reasoning_tokens(), Some(2));

        let delta =
            responses_event(br#"{"type":"response.output_text.delta","delta":"Hi!"}"#).unwrap();
        assert_eq!(
            (delta.name, delta.finished, delta.output_bytes),
            (Some("response.output_text.delta"), false, 3)
        );
        assert_eq!(
            responses_event(br#"{"type":"response.future_thing"}"#)
                .unwrap()
                .name,
            None
        );
        assert!(responses_event(br#"{"type":"#).is_err());

        assert_eq!(
            responses_object_usage(br#"{"id":"r","usage":null}"#).unwrap(),
            None
        );
        let bytes = |b: &'static [u8]| bytes::Bytes::from_static(b);
        let body = bytes(br#"{ "input":"x", "model" : "fast","tools":[{"model":"keep"}]}"#);
        assert_eq!(
            &with_member(&body, "model", br#""gpt-4o-mini""#).unwrap()[..],
            &br#"{ "input":"x", "model" : "gpt-4o-mini","tools":[{"model":"keep"}]}"#[..]
        );
        // Already so: the body itself, not a copy.
        let same = with_member(&body, "model", br#""fast""#).unwrap();
        assert_eq!(same.as_ptr(), body.as_ptr());
        assert!(with_member(&bytes(br#"{"input":"x"}"#), "model", b"1").is_none());
        // Every occurrence, escaped spellings too: a first-wins and a last-wins reader both read
        // the new value.
        let repeated = bytes(br#"{"model":"a","input":"hi","m\u006fdel":"b"}"#);
        assert_eq!(
            &with_member(&repeated, "model", br#""c""#).unwrap()[..],
            &br#"{"model":"c","input":"hi","m\u006fdel":"c"}"#[..]
        );
        assert!(with_member(&bytes(br#"{"model":"a","x":}"#), "model", b"1").is_none());
    }

    /// Bedrock's stream events are counted where the canonical decoders count them (`message`
    /// usage on `message_start`, `usage` on `message_delta`, the invocation metrics on
    /// `message_stop` and on Titan's last chunk), a `null` member is an absent one, and no
    /// upstream count wraps or panics.
    #[test]
    fn bedrock_events_count_usage_where_the_canonical_decoders_do() {
        let mut usage = ClaudeUsage::default();
        for event in [
            &br#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1}},"usage":{"output_tokens":900}}"#[..],
            br#"{"type":"ping","usage":{"output_tokens":500}}"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"},"amazon-bedrock-invocationMetrics":{"outputTokenCount":700}}"#,
        ] {
            claude_event(event, &mut usage).unwrap();
        }
        assert_eq!((usage.input, usage.output), (10, 1));
        for event in [
            &br#"{"type":"message_delta","delta":null,"usage":{"output_tokens":3}}"#[..],
            br#"{"type":"message_delta","delta":{},"usage":null}"#,
            br#"{"type":"content_block_stop","index":0,"message":null}"#,
        ] {
            claude_event(event, &mut usage).unwrap();
        }
        assert_eq!((usage.input, usage.output), (10, 3));
        let stop = br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":4}}"#;
        assert!(claude_event(stop, &mut usage).unwrap().finished);
        assert_eq!((usage.input, usage.output), (12, 4));
        assert!(claude_event(
            br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":null}"#,
            &mut usage
        )
        .is_ok());

        let mut titan = (0, 0);
        titan_chunk(br#"{"outputText":"a","inputTextTokenCount":5,"amazon-bedrock-invocationMetrics":{"inputTokenCount":99}}"#, &mut titan).unwrap();
        assert_eq!(titan, (5, 0));
        titan_chunk(br#"{"outputText":"b","totalOutputTextTokenCount":2,"completionReason":"FINISH","amazon-bedrock-invocationMetrics":{"inputTokenCount":6,"outputTokenCount":3}}"#, &mut titan).unwrap();
        assert_eq!(titan, (6, 3));
        assert!(titan_chunk(
            br#"{"completionReason":"FINISH","amazon-bedrock-invocationMetrics":null}"#,
            &mut titan
        )
        .is_ok());

        let huge = u64::MAX;
        let total = Usage::from_parts(huge, huge, huge, 1);
        assert_eq!((total.prompt_tokens, total.total_tokens), (huge, huge));
        let results = format!(
            r#"{{"inputTextTokenCount":1,"results":[{{"tokenCount":{huge}}},{{"tokenCount":{huge}}}]}}"#
        );
        let usage = titan_result_usage(results.as_bytes()).unwrap().unwrap();
        assert_eq!(usage.completion_tokens, huge);
    }

    /// What the typed decode of an upstream's chunk or reply reads, the scans read too: the
    /// reasoning breakdown of a usage (priced), an `"error": null` member (no error).
    #[test]
    fn usage_details_and_a_null_error_are_read_as_the_typed_decode_reads_them() {
        let usage = br#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"completion_tokens_details":{"reasoning_tokens":40,"x":[1]}}"#;
        let typed: Usage = serde_json::from_slice(usage).unwrap();
        let scanned = openai_usage(usage).unwrap();
        assert_eq!(scanned, typed);
        assert_eq!(scanned.reasoning_tokens(), Some(40));
        let chunk = br#"{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"error":null}"#;
        let facts = openai_chunk(chunk).unwrap();
        assert!(!facts.error && !facts.finished, "{facts:?}");
        assert!(openai_chunk(br#"{"error":{"message":"m"}}"#).unwrap().error);
    }
}
