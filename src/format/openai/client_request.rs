//! A client's OpenAI body → the canonical request, with the conversation read by a byte scan.
//!
//! The canonical request *is* an OpenAI body, so serde's derive decodes it. But most of a real
//! request's bytes are its messages' text, which serde_json reads with its general string parse
//! (a word-at-a-time search for the end and for escapes) and per-key field matching: on a 13.6 KB
//! conversation the typed decode cost more than twice detection's whole scan of the same bytes.
//!
//! [`decode`] walks the `messages` array itself and hands serde the rest of the body with `[]` in
//! the array's place: the same [`ChatRequest`] serde would build, without serde walking the
//! conversation. A *plain* message — a `role` of `system`, `developer`, `user` or `assistant`, a
//! string `content` and at most a string `name`, each once, no other member — is read by the
//! scan: each text checked for control characters, copied once, and unescaped by hand when it has
//! a backslash. Any other message (content parts, tool calls and results, an unknown member, an
//! escape in a key) is decoded by serde alone, as `[[message]]` so that it sits as deep as it does
//! in the body (serde's depth limit counts the same). What serde or the scan refuses answers
//! `None`, and the caller decodes the whole body with serde as before, so every error a client
//! sees is still serde's. A test holds the two decodes equal on thousands of mutated bodies.
//!
//! Hand-written because serde cannot skip a member without walking it (`IgnoredAny` still scans
//! and unescapes every string), and a borrowed or lazy JSON type would still leave the messages'
//! typed decode to serde.
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
//! // Content parts are serde's to read, that message alone; what serde refuses is left to it whole.
//! let parts = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}"#;
//! assert_eq!(decode(parts).unwrap(), serde_json::from_str::<ChatRequest>(parts).unwrap());
//! assert!(decode(r#"{"model":"m","messages":[{"role":"user","content":7}]}"#).is_none());
//! ```

use crate::format::scan::{
    has_control, is_printable_ascii, quote_or_backslash, skip_string, skip_value, skip_ws,
    unicode_escape,
};
use crate::model::{ChatRequest, Message, MessageContent, Role};

/// `text` (one JSON object) as a request (see the module docs); `None` leaves the body to serde,
/// for its error.
pub fn decode(text: &str) -> Option<ChatRequest> {
    let b = text.as_bytes();
    let mut at = skip_ws(b, 0);
    expect(b, at, b'{')?;
    at = skip_ws(b, at + 1);
    let mut conversation = None;
    if b.get(at) != Some(&b'}') {
        loop {
            // One member: the messages read, any other value skipped (serde reads it below).
            expect(b, at, b'"')?;
            let key_end = skip_string(b, at).ok()?;
            let key = &b[at + 1..key_end - 1];
            if key.contains(&b'\\') {
                // An escaped key may spell `messages` in a way this walk would not see.
                return None;
            }
            let colon = skip_ws(b, key_end);
            expect(b, colon, b':')?;
            let value = skip_ws(b, colon + 1);
            let end = if key == b"messages" {
                if conversation.is_some() {
                    return None;
                }
                let (list, end) = messages(text, value)?;
                conversation = Some((list, value, end));
                end
            } else {
                skip_value(b, value).ok()?
            };
            at = skip_ws(b, end);
            match b.get(at)? {
                b',' => at = skip_ws(b, at + 1),
                b'}' => break,
                _ => return None,
            }
        }
    }
    let (messages, start, end) = conversation?;
    // The rest of the body, `[]` in the array's place, for serde. `from_str` refuses anything
    // after the object's end; the whole-body fallback would not, but detection has refused
    // trailing bytes before either runs.
    let mut rest = String::with_capacity(text.len() - (end - start) + 2);
    rest.push_str(text.get(..start)?);
    rest.push_str("[]");
    rest.push_str(text.get(end..)?);
    let mut request: ChatRequest = serde_json::from_str(&rest).ok()?;
    request.messages = messages;
    Some(request)
}

fn expect(b: &[u8], at: usize, byte: u8) -> Option<()> {
    (b.get(at) == Some(&byte)).then_some(())
}

/// The array of messages at `text[at]` and the index just past it: plain messages by the scan,
/// any other by serde.
fn messages(text: &str, mut at: usize) -> Option<(Vec<Message>, usize)> {
    let b = text.as_bytes();
    expect(b, at, b'[')?;
    at = skip_ws(b, at + 1);
    let mut messages = Vec::new();
    if b.get(at) == Some(&b']') {
        return Some((messages, at + 1));
    }
    loop {
        let (message, end) = match plain_message(text, at) {
            Some(plain) => plain,
            None => serde_message(text, at)?,
        };
        messages.push(message);
        at = skip_ws(b, end);
        match b.get(at)? {
            b',' => at = skip_ws(b, at + 1),
            b']' => return Some((messages, at + 1)),
            _ => return None,
        }
    }
}

/// The message at `text[at]`, decoded by serde, and the index just past it. Wrapped in two arrays
/// so it is as deep as in the body (an object and an array), for serde's depth limit.
fn serde_message(text: &str, at: usize) -> Option<(Message, usize)> {
    let end = skip_value(text.as_bytes(), at).ok()?;
    let raw = text.get(at..end)?;
    let mut wrapped = String::with_capacity(raw.len() + 4);
    wrapped.push_str("[[");
    wrapped.push_str(raw);
    wrapped.push_str("]]");
    let [[message]]: [[Message; 1]; 1] = serde_json::from_str(&wrapped).ok()?;
    Some((message, end))
}

/// The message object at `text[at]` when it is plain, and the index just past it.
fn plain_message(text: &str, mut at: usize) -> Option<(Message, usize)> {
    let b = text.as_bytes();
    expect(b, at, b'{')?;
    at = skip_ws(b, at + 1);
    let (mut role, mut content, mut name) = (None, None, None);
    if b.get(at) != Some(&b'}') {
        loop {
            expect(b, at, b'"')?;
            let key_end = skip_string(b, at).ok()?;
            let key = &b[at + 1..key_end - 1];
            let colon = skip_ws(b, key_end);
            expect(b, colon, b':')?;
            let value = skip_ws(b, colon + 1);
            let end = match key {
                b"role" if role.is_none() => {
                    let end = skip_string(b, value).ok()?;
                    // A tool or function result needs more than this (its call id, its name).
                    role = Some(match b.get(value..end)? {
                        br#""system""# => Role::System,
                        br#""developer""# => Role::Developer,
                        br#""user""# => Role::User,
                        br#""assistant""# => Role::Assistant,
                        _ => return None,
                    });
                    end
                }
                b"content" if content.is_none() => {
                    let (s, end) = string(text, value)?;
                    content = Some(s);
                    end
                }
                b"name" if name.is_none() => {
                    let (s, end) = string(text, value)?;
                    name = Some(s);
                    end
                }
                // Another member, or one repeated (which serde refuses).
                _ => return None,
            };
            at = skip_ws(b, end);
            match b.get(at)? {
                b',' => at = skip_ws(b, at + 1),
                b'}' => break,
                _ => return None,
            }
        }
    }
    let mut message = Message::new(role?, Some(MessageContent::Text(content?)));
    message.name = name;
    Some((message, at + 1))
}

/// The JSON string at `text[at]`, decoded, and the index just past it: one pass that finds each
/// quote or backslash with a vector search, checks the text between for control characters
/// (which JSON requires escaped and serde_json refuses raw), copies it once and decodes the
/// escapes as serde_json does. `None` for an escape it refuses (an unknown letter, a short or
/// non-hex `\u`, a lone surrogate).
fn string(text: &str, at: usize) -> Option<(String, usize)> {
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
        // Room for as much again as the text before the first escape: one block for the usual
        // string (a line break or two in prose), with no regrowth.
        let s = out.get_or_insert_with(|| String::with_capacity(2 * (stop - at) + 16));
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
        ];
        for body in bodies {
            let fast = decode(body).unwrap_or_else(|| panic!("not decoded by the scan: {body}"));
            assert_eq!(Some(fast), serde(body), "{body}");
        }
    }

    #[test]
    fn what_serde_refuses_is_left_to_it() {
        let bodies = [
            // An escaped key may spell `messages`: any escaped top-level key is left to serde.
            r#"{"model":"m","messag\u0065s":[{"role":"user","content":"a"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a"}],"metadat\u0061":{}}"#,
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
    /// decode (two plain, one with messages serde reads), so every mutation tests a decision.
    #[test]
    fn mutated_bodies_decode_as_serde_decodes_them_or_are_left_to_it() {
        let seeds = [
            r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"a_b","content":"Tell me \"why\"\n\\ please \u00e9\ud83d\ude00"}],"temperature":1,"max_tokens":64}"#,
            r#"{"messages":[{"role":"user","content":"Ελληνικά \/ text"},{"role":"assistant","content":"ok"},{"role":"user","content":"\t\u0041"}],"model":"m","stream":false,"extra":{"a":[1,2]}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a\n"}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"},{"role":"user","content":"ok"}]}"#,
        ];
        let alphabet = b"{}[]:,\"\\ u0dD8eE9afnrtbx/\t\x01";
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
