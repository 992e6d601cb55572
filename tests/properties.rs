//! Property tests over every decoder (issue 16, item 6): arbitrary bytes and arbitrary JSON never
//! panic (and never produce a 5xx where a client error is due), and valid inputs round-trip.
//!
//! Decoders covered: detection ([`BodyHead`], [`detect_format`]); each client format through
//! [`decode_request`] (OpenAI, Claude, Titan, Converse) and the strict checks behind it; the SSE
//! decoder; the event-stream path (the upstream payload decoders, and the gateway's own frames read
//! back with the AWS SDK's frame decoder); the configuration parser (the SigV4 header parser's properties are in `src/sigv4.rs`, a
//! crate-private module). The pass-through's byte scans (detection, the request walk, the model
//! splice, the relays of OpenAI replies and chunks, Claude events, Titan chunks, Responses API
//! events and complete Claude, Titan and Responses API replies) are checked against serde_json on the same bytes,
//! written with whitespace, escapes in keys and strings and members in any order.
//! The same entry points are cargo-fuzz targets in `fuzz/` for longer runs on nightly.
//!
//! Case counts are kept small enough that this file runs in a few seconds in CI.

use bytes::Bytes;
use open_bedrock_server::config::Config;
use open_bedrock_server::detect::{detect_format, BodyHead, Classified, DetectedRequest};
use open_bedrock_server::format::bedrock_claude::ClaudeStreamDecoder;
use open_bedrock_server::format::bedrock_titan::TitanStreamDecoder;
use open_bedrock_server::format::openai::OpenAiStreamDecoder;
use open_bedrock_server::format::scan;
use open_bedrock_server::format::{InboundFormat, ReplyFormat};
use open_bedrock_server::model::{ChatRequest, ChunkMeta, Usage};
use open_bedrock_server::sse::SseDecoder;
use open_bedrock_server::stream::StreamDecoder;
use open_bedrock_server::translate::decode_request;
use open_bedrock_server::validate;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Keys that steer the decoders into their branches, plus arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "model", "messages", "role", "content", "type", "text", "stream", "tools", "function",
            "name", "tool_choice", "tool_calls", "tool_call_id", "image_url", "url", "detail",
            "anthropic_version", "inputText", "textGenerationConfig", "max_tokens", "system",
            "input", "input_schema", "toolUse", "toolResult", "toolUseId", "inferenceConfig",
            "toolConfig", "toolSpec", "source", "seed", "n", "logit_bias", "response_format",
            "stream_options", "temperature", "stop", "metadata", "json",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,10}",
        // Keys that unescape to what a plain key cannot hold.
        1 => "[a-z/\"\\\\é☃𝄞]{0,6}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(vec![
            "user",
            "assistant",
            "system",
            "tool",
            "text",
            "image",
            "tool_use",
            "tool_result",
            "function",
            "auto",
            "none",
            "required",
            "gpt-4o",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "amazon.titan-text-express-v1",
            "",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

/// Arbitrary JSON, biased towards the shapes the decoders look for.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    btree_map(key(), json_value(), 0..8).prop_map(|m| m.into_iter().collect())
}

fn inbound() -> impl Strategy<Value = InboundFormat> {
    prop::sample::select(vec![
        InboundFormat::OpenAi,
        InboundFormat::BedrockClaude,
        InboundFormat::BedrockTitan,
        InboundFormat::Converse,
    ])
}

fn detected(format: InboundFormat, body: Vec<u8>, path_model: Option<String>) -> DetectedRequest {
    let mut c = Classified::new(format, ReplyFormat::OpenAi);
    if let Some(m) = path_model {
        c = c.with_model(m);
    }
    DetectedRequest::new(c, body)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn detection_never_panics_on_bytes(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok(head) = BodyHead::parse(&bytes) {
            let _ = detect_format(&head);
        }
    }

    #[test]
    fn detection_reads_what_a_full_parse_reads(
        object in json_object(),
        picks in vec(any::<u8>(), 0..64),
    ) {
        // As serde_json writes it, and (with picks) with whitespace, members in another order and
        // escapes in keys and strings.
        let bytes = if picks.is_empty() {
            serde_json::to_vec(&object).unwrap()
        } else {
            written_unusually(&Value::Object(object.clone()), &picks).into_bytes()
        };
        let head = BodyHead::parse(&bytes).unwrap();
        let tree = BodyHead::of(&object);
        for marker in ["anthropic_version", "inputText", "model", "model_id", "modelId", "messages", "stream", "system"] {
            prop_assert_eq!(head.has(marker), tree.has(marker), "{}", marker);
        }
        prop_assert_eq!(head.model(), tree.model());
        prop_assert_eq!(head.stream(), tree.stream());
        prop_assert_eq!(detect_format(&head).is_ok(), detect_format(&tree).is_ok());
    }

    #[test]
    fn every_client_decoder_answers_arbitrary_json_with_a_client_error_at_worst(
        format in inbound(),
        object in json_object(),
        path_model in proptest::option::of("[a-z.:-]{1,20}"),
    ) {
        let bytes = serde_json::to_vec(&object).unwrap();
        if let Err(e) = decode_request(detected(format, bytes, path_model)) {
            prop_assert!(e.status().is_client_error(), "{} {}", e.status(), e.message());
        }
    }

    #[test]
    fn every_client_decoder_survives_arbitrary_bytes(
        format in inbound(),
        bytes in vec(any::<u8>(), 0..256),
    ) {
        if let Err(e) = decode_request(detected(format, bytes, Some("m".into()))) {
            prop_assert!(e.status().is_client_error(), "{}", e.message());
        }
    }
}

/// A valid OpenAI request: text turns, optional sampling fields, unknown fields.
fn valid_openai() -> impl Strategy<Value = Value> {
    let turn = (
        prop::sample::select(vec!["system", "user", "assistant", "developer"]),
        ".{0,20}",
    )
        .prop_map(|(role, text)| json!({"role": role, "content": text}));
    (
        "[a-z][a-z0-9.:/-]{0,30}",
        vec(turn, 1..6),
        proptest::option::of(0.0f64..=2.0),
        proptest::option::of(1u32..100_000),
        proptest::option::of(any::<i64>()),
        proptest::option::of(json_value()),
    )
        .prop_map(
            |(model, messages, temperature, max_tokens, seed, unknown)| {
                let mut body = json!({"model": model, "messages": messages});
                if let Some(t) = temperature {
                    body["temperature"] = json!(t);
                }
                if let Some(m) = max_tokens {
                    body["max_tokens"] = json!(m);
                }
                if let Some(s) = seed {
                    body["seed"] = json!(s);
                }
                if let Some(u) = unknown {
                    body["x_vendor_field"] = u;
                }
                body
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_openai_requests_round_trip(body in valid_openai()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let (request, original) = decode_request(detected(InboundFormat::OpenAi, bytes, None)).unwrap();
        prop_assert!(original.is_none());
        prop_assert!(validate::openai_request(&request).is_ok());
        prop_assert_eq!(serde_json::to_value(&request).unwrap(), body);
    }

    #[test]
    fn valid_claude_bodies_keep_their_turns(texts in vec("[^\u{0}]{1,20}", 1..6)) {
        let messages: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": t}))
            .collect();
        let body = json!({"anthropic_version": "bedrock-2023-05-31", "model": "gpt-4o",
            "max_tokens": 16, "messages": messages});
        let bytes = serde_json::to_vec(&body).unwrap();
        let (request, original) =
            decode_request(detected(InboundFormat::BedrockClaude, bytes, None)).unwrap();
        let got: Vec<String> = request.messages.iter().map(|m| m.text_content()).collect();
        prop_assert_eq!(got, texts);
        // The native body is kept as written for pass-through.
        prop_assert_eq!(&original.unwrap().json["messages"], &body["messages"]);
    }

    #[test]
    fn the_strict_checks_never_panic(object in json_object()) {
        if let Ok(request) = serde_json::from_value::<ChatRequest>(Value::Object(object.clone())) {
            let _ = validate::openai_request(&request);
        }
        for format in [InboundFormat::BedrockClaude, InboundFormat::BedrockTitan, InboundFormat::Converse] {
            let _ = validate::native_body(format, &object);
        }
    }
}

/// One SSE event as written on the wire.
fn sse_text(event: &Option<String>, data: &[String]) -> String {
    let mut out = String::new();
    if let Some(e) = event {
        out.push_str(&format!("event: {e}\n"));
    }
    for line in data {
        out.push_str(&format!("data: {line}\n"));
    }
    out.push('\n');
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sse_decoder_never_panics(chunks in vec(vec(any::<u8>(), 0..64), 0..8)) {
        let mut dec = SseDecoder::new();
        for c in &chunks {
            dec.push(c);
            while dec.next_event().is_some() {}
        }
    }

    #[test]
    fn sse_events_round_trip_across_any_split(
        events in vec((proptest::option::of("[a-z_]{1,12}"), vec("[^\r\n]{0,16}", 1..3)), 1..6),
        cuts in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let wire: String = events.iter().map(|(e, d)| sse_text(e, d)).collect();
        let bytes = wire.as_bytes();
        let mut offsets: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        offsets.sort_unstable();
        let mut dec = SseDecoder::new();
        let mut got = Vec::new();
        let mut start = 0;
        for end in offsets.into_iter().chain([bytes.len()]) {
            dec.push(&bytes[start..end]);
            start = end;
            while let Some(ev) = dec.next_event() {
                got.push((ev.event, String::from_utf8(ev.data.to_vec()).unwrap()));
            }
        }
        let want: Vec<(Option<String>, String)> =
            events.iter().map(|(e, d)| (e.clone(), d.join("\n"))).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn upstream_stream_decoders_never_panic(payloads in vec(prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        json_value().prop_map(|v| Bytes::from(serde_json::to_vec(&v).unwrap())),
    ], 0..6)) {
        let meta = ChunkMeta::new("m");
        let mut out = Vec::new();
        let mut claude = ClaudeStreamDecoder::new(meta.clone());
        let mut titan = TitanStreamDecoder::new(meta);
        let mut openai = OpenAiStreamDecoder::new();
        for p in &payloads {
            let _ = StreamDecoder::push(&mut claude, p.clone(), &mut out);
            let _ = StreamDecoder::push(&mut titan, p.clone(), &mut out);
            let _ = openai.push(p.clone(), &mut out);
        }
        let _ = StreamDecoder::finish(&mut claude, &mut out);
        let _ = StreamDecoder::finish(&mut titan, &mut out);
        let _ = openai.finish(&mut out);
    }

    #[test]
    fn event_stream_frames_round_trip_through_the_sdk_decoder(
        events in vec(("[a-zA-Z]{1,16}", vec(any::<u8>(), 0..128)), 1..6),
    ) {
        let mut buf = bytes::BytesMut::new();
        for (name, payload) in &events {
            open_bedrock_server::eventstream::write_event(&mut buf, name, payload);
        }
        let mut wire: &[u8] = &buf;
        for (name, payload) in &events {
            let msg = aws_smithy_eventstream::frame::read_message_from(&mut wire).unwrap();
            let event_type = msg
                .headers()
                .iter()
                .find(|h| h.name().as_str() == ":event-type")
                .and_then(|h| h.value().as_string().ok().map(|s| s.as_str().to_owned()));
            prop_assert_eq!(event_type.as_deref(), Some(name.as_str()));
            prop_assert_eq!(&msg.payload()[..], &payload[..]);
        }
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn the_event_stream_frame_decoder_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..256)) {
        let mut wire: &[u8] = &bytes;
        while !wire.is_empty() {
            if aws_smithy_eventstream::frame::read_message_from(&mut wire).is_err() {
                break;
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_config_parser_never_panics(text in ".{0,200}") {
        let _ = Config::from_toml(&text);
    }

    #[test]
    fn toml_shaped_text_never_panics(
        lines in vec((prop::sample::select(vec!["[server]", "[auth]", "[timeouts]", "[retry]", "[[routes]]", "[rate_limit]", "[models.aliases]"]),
            key(), json_value()), 0..6),
    ) {
        let mut text = String::new();
        for (section, k, v) in lines {
            text.push_str(&format!("{section}\n{k} = {v}\n"));
        }
        let _ = Config::from_toml(&text);
    }

    #[test]
    fn valid_configs_round_trip(
        port in 1u16..,
        max_in_flight in 1usize..100_000,
        attempts in 1u32..=10,
        first_byte_ms in 1u64..1_000_000,
        alias in "[a-z]{1,10}",
        target in "[a-z][a-z0-9.-]{0,20}",
    ) {
        let text = format!(
            "[server]\nport = {port}\nmax_in_flight = {max_in_flight}\n[retry]\nmax_attempts = {attempts}\n\
             [timeouts]\nfirst_byte_ms = {first_byte_ms}\n[models.aliases]\n{alias} = \"{target}\"\n"
        );
        let config = Config::from_toml(&text).unwrap();
        prop_assert_eq!(config.server.port, port);
        prop_assert_eq!(config.server.max_in_flight, max_in_flight);
        prop_assert_eq!(config.retry.max_attempts, attempts);
        prop_assert_eq!(config.timeouts.first_byte.as_millis(), u128::from(first_byte_ms));
        prop_assert_eq!(config.models.aliases.get(&alias), Some(&target));
        // The printed tree reads back to the same tree.
        let again = Config::from_toml(&config.to_masked_toml()).unwrap();
        prop_assert_eq!(again.server, config.server);
        prop_assert_eq!(again.retry, config.retry);
        prop_assert_eq!(again.timeouts, config.timeouts);
    }
}

// ---- The pass-through's byte scans against serde_json --------------------------------------------
//
// A relayed reply's usage is what the limiter, the budgets, the metrics and the log line count,
// and only the byte scans read it (`scan::openai_completion`, `scan::openai_chunk`). Any valid JSON
// a writer may produce — whitespace between tokens, keys with an escaped character, strings that
// spell JSON, members in any order, unknown members of any shape — must give the scans what
// serde_json reads from the same bytes.

/// The choices an unusual JSON writer makes, taken in turn (from the start again when used up).
struct Picks<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Picks<'_> {
    fn next(&mut self) -> u8 {
        let b = match self.bytes.len() {
            0 => 0,
            n => self.bytes[self.at % n],
        };
        self.at += 1;
        b
    }
}

/// Writes `v` as valid JSON as `p` chooses: whitespace between tokens, an object's members in a
/// rotated order, and keys and strings with one character, or every one, written as a `\u`
/// escape (either case of hex; a surrogate pair beyond U+FFFF; a slash sometimes as `\/`).
fn write_unusual(v: &Value, p: &mut Picks<'_>, out: &mut String) {
    fn space(p: &mut Picks<'_>, out: &mut String) {
        out.push_str(match p.next() % 5 {
            0 | 1 => "",
            2 => " ",
            3 => "\n  ",
            _ => "\t\r\n",
        });
    }
    fn string(k: &str, p: &mut Picks<'_>, out: &mut String) {
        let pick = p.next();
        let chars: Vec<char> = k.chars().collect();
        if pick >= 64 || chars.is_empty() {
            out.push_str(&serde_json::to_string(k).unwrap());
            return;
        }
        let at = usize::from(pick) % chars.len();
        let every = pick >= 56;
        let short_slash = p.next().is_multiple_of(2);
        out.push('"');
        for (i, c) in chars.iter().enumerate() {
            if *c == '/' && (i == at || every) && short_slash {
                out.push_str("\\/");
            } else if i == at || every {
                // Beyond U+FFFF, as a surrogate pair.
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    let hex = format!("{unit:04x}");
                    out.push_str("\\u");
                    out.push_str(&if pick.is_multiple_of(2) {
                        hex
                    } else {
                        hex.to_uppercase()
                    });
                }
            } else {
                let s = serde_json::to_string(&c.to_string()).unwrap();
                out.push_str(&s[1..s.len() - 1]);
            }
        }
        out.push('"');
    }
    match v {
        Value::Object(m) => {
            let mut members: Vec<_> = m.iter().collect();
            if !members.is_empty() {
                let by = usize::from(p.next()) % members.len();
                members.rotate_left(by);
            }
            out.push('{');
            for (n, (k, v)) in members.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                space(p, out);
                string(k, p, out);
                space(p, out);
                out.push(':');
                space(p, out);
                write_unusual(v, p, out);
                space(p, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (n, v) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                space(p, out);
                write_unusual(v, p, out);
                space(p, out);
            }
            out.push(']');
        }
        Value::String(text) => string(text, p, out),
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

/// `v` written by [`write_unusual`] as `picks` choose, checked to read back as `v`.
fn written_unusually(v: &Value, picks: &[u8]) -> String {
    let mut text = String::new();
    write_unusual(
        v,
        &mut Picks {
            bytes: picks,
            at: 0,
        },
        &mut text,
    );
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(&read, v, "the writer wrote what it was given: {text}");
    text
}

/// A scan's answer for `text`, a failed case when it found the bytes malformed.
fn scanned<T>(answer: Result<T, scan::Malformed>, text: &str) -> Result<T, TestCaseError> {
    answer.map_err(|e| TestCaseError::fail(format!("{e}: {text}")))
}

/// Text that spells JSON, escapes and characters beyond ASCII, or anything.
fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            r#""usage":{"prompt_tokens":1}"#,
            r#"},"usage":null,"x":{"#,
            "}]",
            "\\",
            "\"",
            "é ☃ 𝄞",
            "https://example.com/a/b",
            "",
        ])
        .prop_map(str::to_owned),
        ".{0,12}",
    ]
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u32>().prop_map(u64::from), any::<u64>()]
}

/// Members the reply strategies add beside the ones they write themselves.
fn unknown_members(known: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    btree_map(key(), json_value(), 0..4).prop_map(move |m| {
        m.into_iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .collect()
    })
}

/// An OpenAI `usage` object: the counts, sometimes the details, sometimes members of any shape.
fn usage_object() -> impl Strategy<Value = Value> {
    (
        count(),
        count(),
        count(),
        proptest::option::of((proptest::option::of(count()), proptest::option::of(count()))),
        proptest::option::of(json_value()),
        unknown_members(&[
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        ]),
    )
        .prop_map(
            |(prompt, completion, total, details, completion_details, mut extra)| {
                extra.insert("prompt_tokens".into(), json!(prompt));
                extra.insert("completion_tokens".into(), json!(completion));
                extra.insert("total_tokens".into(), json!(total));
                if let Some((cached, written)) = details {
                    let mut d = Map::new();
                    if let Some(c) = cached {
                        d.insert("cached_tokens".into(), json!(c));
                    }
                    if let Some(w) = written {
                        d.insert("cache_write_tokens".into(), json!(w));
                    }
                    extra.insert("prompt_tokens_details".into(), Value::Object(d));
                }
                if let Some(c) = completion_details {
                    extra.insert("completion_tokens_details".into(), c);
                }
                Value::Object(extra)
            },
        )
}

/// A `usage` member: absent, `null`, or an object.
fn usage_member() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => usage_object().prop_map(Some),
    ]
}

/// The count serde_json reads at `v[k]` (`None` when absent or not a whole number).
fn count_at(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

/// [`count_at`], or `or`.
fn count_or(v: &Value, k: &str, or: u64) -> u64 {
    count_at(v, k).unwrap_or(or)
}

/// The usage serde_json reads from `v["usage"]`, as comparable counts.
type Counts = (
    u64,
    u64,
    u64,
    Option<(Option<u64>, Option<u64>)>,
    Option<Value>,
);

fn counts_of_value(v: &Value) -> Option<Counts> {
    let u = v.get("usage").filter(|u| !u.is_null())?;
    let n = |k: &str| count_or(u, k, 0);
    let details = u
        .get("prompt_tokens_details")
        .filter(|d| !d.is_null())
        .map(|d| {
            (
                count_at(d, "cached_tokens"),
                count_at(d, "cache_write_tokens"),
            )
        });
    let completion = u
        .get("completion_tokens_details")
        .filter(|d| !d.is_null())
        .cloned();
    Some((
        n("prompt_tokens"),
        n("completion_tokens"),
        n("total_tokens"),
        details,
        completion,
    ))
}

fn counts_of_scan(u: Option<&open_bedrock_server::model::Usage>) -> Option<Counts> {
    let u = u?;
    let details = u
        .prompt_tokens_details
        .as_ref()
        .map(|d| (d.cached_tokens, d.cache_write_tokens));
    Some((
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        details,
        u.completion_tokens_details.clone(),
    ))
}

/// A complete OpenAI reply as an upstream may write it.
fn completion_reply() -> impl Strategy<Value = Value> {
    let choice = (
        0u32..4,
        tricky_text(),
        proptest::option::of(prop::sample::select(vec!["stop", "length", "tool_calls"])),
    )
        .prop_map(|(index, content, finish)| {
            json!({
                "index": index,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "logprobs": null,
                "finish_reason": finish,
            })
        });
    (
        tricky_text(),
        prop_oneof![Just(String::from("gpt-4o")), tricky_text()],
        vec(choice, 0..3),
        usage_member(),
        unknown_members(&["id", "object", "created", "model", "choices", "usage"]),
    )
        .prop_map(|(id, model, choices, usage, mut m)| {
            m.insert("id".into(), json!(id));
            m.insert("object".into(), json!("chat.completion"));
            m.insert("created".into(), json!(1_732_000_000u64));
            m.insert("model".into(), json!(model));
            m.insert("choices".into(), Value::Array(choices));
            if let Some(u) = usage {
                m.insert("usage".into(), u);
            }
            Value::Object(m)
        })
}

/// One OpenAI stream chunk as an upstream may write it.
fn stream_chunk() -> impl Strategy<Value = Value> {
    let choice = (
        tricky_text(),
        proptest::option::of(prop::sample::select(vec!["stop", "length"])),
    )
        .prop_map(|(content, finish)| {
            json!({"index": 0, "delta": {"content": content}, "finish_reason": finish})
        });
    (
        vec(choice, 0..3),
        usage_member(),
        unknown_members(&["choices", "usage", "error"]),
    )
        .prop_map(|(choices, usage, mut m)| {
            m.insert("object".into(), json!("chat.completion.chunk"));
            m.insert("choices".into(), Value::Array(choices));
            if let Some(u) = usage {
                m.insert("usage".into(), u);
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_relayed_reply_is_read_as_serde_json_reads_it(
        reply in completion_reply(),
        picks in vec(any::<u8>(), 1..64),
    ) {
        let text = written_unusually(&reply, &picks);
        let facts = scanned(scan::openai_completion(text.as_bytes()), &text)?;
        prop_assert_eq!(counts_of_scan(facts.usage.as_ref()), counts_of_value(&reply), "{}", text);
        let named = reply["model"].as_str().is_some_and(|m| !m.is_empty());
        prop_assert_eq!(facts.has_model, named, "{}", text);
    }

    #[test]
    fn a_request_written_unusually_is_read_as_serde_json_reads_it(
        body in valid_openai(),
        text in tricky_text(),
        picks in vec(any::<u8>(), 1..64),
    ) {
        let mut body = body;
        body["messages"][0]["content"] = json!(text);
        let written = written_unusually(&body, &picks);
        // The walk itself (which leaves what it does not read exactly, a float, to serde)...
        let walked = open_bedrock_server::format::openai::client_request::decode(&written);
        let plain = body.get("temperature").is_none() && body.get("x_vendor_field").is_none();
        prop_assert!(walked.is_some() || !plain, "the walk left {} to serde", written);
        if let Some(request) = walked {
            prop_assert_eq!(&serde_json::to_value(&request).unwrap(), &body, "{}", written);
        }
        // ... and the decode whichever reads it.
        let (request, _) =
            decode_request(detected(InboundFormat::OpenAi, written.clone().into_bytes(), None))
                .map_err(|e| TestCaseError::fail(format!("{}: {written}", e.message())))?;
        prop_assert_eq!(serde_json::to_value(&request).unwrap(), body, "{}", written);
    }

    #[test]
    fn a_relayed_chunk_is_read_as_serde_json_reads_it(
        chunk in stream_chunk(),
        picks in vec(any::<u8>(), 1..64),
    ) {
        let text = written_unusually(&chunk, &picks);
        let facts = scanned(scan::openai_chunk(text.as_bytes()), &text)?;
        prop_assert_eq!(counts_of_scan(facts.usage.as_ref()), counts_of_value(&chunk), "{}", text);
        let choices = chunk["choices"].as_array().unwrap();
        let finished = choices.iter().any(|c| !c["finish_reason"].is_null());
        prop_assert_eq!(facts.finished, finished, "{}", text);
        prop_assert_eq!(facts.usage_only, choices.is_empty() && counts_of_value(&chunk).is_some());
        prop_assert!(!facts.error);
    }
}

/// Anthropic's usage counts: input, output, cache read, cache write.
const CLAUDE_USAGE: [&str; 4] = [
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
];

/// Bedrock's invocation metrics' counts, in the same order.
const BEDROCK_METRICS: [&str; 4] = [
    "inputTokenCount",
    "outputTokenCount",
    "cacheReadInputTokenCount",
    "cacheWriteInputTokenCount",
];

/// Anthropic's usage members, some of them, with members of any shape beside them.
fn claude_usage_object() -> impl Strategy<Value = Value> {
    (
        vec((prop::sample::select(CLAUDE_USAGE.to_vec()), count()), 0..4),
        unknown_members(&CLAUDE_USAGE),
    )
        .prop_map(|(counts, mut m)| {
            for (k, n) in counts {
                m.insert(k.into(), json!(n));
            }
            Value::Object(m)
        })
}

/// One Claude stream event as Bedrock may write it: a `message_start` with the message's usage,
/// a `message_delta` with its own, a `message_stop` with Bedrock's invocation metrics, or a
/// text delta.
fn claude_stream_event() -> impl Strategy<Value = Value> {
    let metrics = vec(
        (
            prop::sample::select([&BEDROCK_METRICS[..], &["invocationLatency"]].concat()),
            count(),
        ),
        0..4,
    )
    .prop_map(|c| {
        Value::Object(
            c.into_iter()
                .map(|(k, n)| (k.to_owned(), json!(n)))
                .collect(),
        )
    });
    prop_oneof![
        (claude_usage_object(), tricky_text()).prop_map(|(usage, id)| json!({
            "type": "message_start",
            "message": {"id": id, "role": "assistant", "content": [], "usage": usage},
        })),
        claude_usage_object().prop_map(|usage| json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": usage,
        })),
        metrics.prop_map(|m| json!({
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": m,
        })),
        tricky_text().prop_map(|text| json!({
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        })),
    ]
}

/// The counts serde_json reads from one Claude event, over `start` (input, output, cache read,
/// cache write), as the canonical decoder takes them.
fn claude_counts_of_value(v: &Value, start: [u64; 4]) -> [u64; 4] {
    let mut out = start;
    let mut read = |from: &Value, names: [&str; 4]| {
        for (slot, name) in out.iter_mut().zip(names) {
            if let Some(n) = count_at(from, name) {
                *slot = n;
            }
        }
    };
    match v["type"].as_str() {
        Some("message_start") => read(&v["message"]["usage"], CLAUDE_USAGE),
        Some("message_delta") => read(&v["usage"], CLAUDE_USAGE),
        Some("message_stop") => read(&v["amazon-bedrock-invocationMetrics"], BEDROCK_METRICS),
        _ => {}
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_relayed_claude_event_is_read_as_serde_json_reads_it(
        event in claude_stream_event(),
        start in prop::array::uniform4(count()),
        picks in vec(any::<u8>(), 1..64),
    ) {
        let text = written_unusually(&event, &picks);
        let mut usage = scan::ClaudeUsage::default();
        [usage.input, usage.output, usage.cache_read, usage.cache_write] = start;
        let facts = scanned(scan::claude_event(text.as_bytes(), &mut usage), &text)?;
        prop_assert_eq!(
            [usage.input, usage.output, usage.cache_read, usage.cache_write],
            claude_counts_of_value(&event, start),
            "{}", text
        );
        prop_assert_eq!(facts.name, event["type"].as_str(), "{}", text);
        prop_assert_eq!(facts.finished, event["type"] == "message_stop");
    }
}

/// One Titan stream chunk as Bedrock may write it: text, the running counts, and on the last one
/// `completionReason` and Bedrock's invocation metrics.
fn titan_stream_chunk() -> impl Strategy<Value = Value> {
    (
        tricky_text(),
        proptest::option::of(count()),
        proptest::option::of(count()),
        proptest::option::of(prop::sample::select(vec!["FINISH", "LENGTH"])),
        proptest::option::of((count(), count())),
        unknown_members(&[
            "outputText",
            "inputTextTokenCount",
            "totalOutputTextTokenCount",
            "completionReason",
            "amazon-bedrock-invocationMetrics",
        ]),
    )
        .prop_map(|(text, input, output, reason, metrics, mut m)| {
            m.insert("outputText".into(), json!(text));
            m.insert("index".into(), json!(0));
            if let Some(n) = input {
                m.insert("inputTextTokenCount".into(), json!(n));
            }
            if let Some(n) = output {
                m.insert("totalOutputTextTokenCount".into(), json!(n));
            }
            m.insert("completionReason".into(), json!(reason));
            if let Some((i, o)) = metrics {
                m.insert(
                    "amazon-bedrock-invocationMetrics".into(),
                    json!({"inputTokenCount": i, "outputTokenCount": o, "invocationLatency": 5}),
                );
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_relayed_titan_chunk_is_read_as_serde_json_reads_it(
        chunk in titan_stream_chunk(),
        start in (count(), count()),
        picks in vec(any::<u8>(), 1..64),
    ) {
        let text = written_unusually(&chunk, &picks);
        let mut usage = start;
        let facts = scanned(scan::titan_chunk(text.as_bytes(), &mut usage), &text)?;
        let finished = !chunk["completionReason"].is_null();
        let mut expected = (
            count_or(&chunk, "inputTextTokenCount", start.0),
            count_or(&chunk, "totalOutputTextTokenCount", start.1),
        );
        if finished {
            let metrics = &chunk["amazon-bedrock-invocationMetrics"];
            expected = (
                count_or(metrics, "inputTokenCount", expected.0),
                count_or(metrics, "outputTokenCount", expected.1),
            );
        }
        prop_assert_eq!(usage, expected, "{}", text);
        prop_assert_eq!(facts.finished, finished, "{}", text);
    }
}

/// A Responses API `usage` object: the counts, sometimes the details.
fn responses_usage_object() -> impl Strategy<Value = Value> {
    (
        count(),
        count(),
        proptest::option::of(count()),
        proptest::option::of(count()),
    )
        .prop_map(|(input, output, cached, reasoning)| {
            let mut u = json!({"input_tokens": input, "output_tokens": output, "total_tokens": 0});
            if let Some(c) = cached {
                u["input_tokens_details"] = json!({"cached_tokens": c});
            }
            if let Some(r) = reasoning {
                u["output_tokens_details"] = json!({"reasoning_tokens": r});
            }
            u
        })
}

/// A complete Bedrock reply (Claude's message, Titan's results) or a Responses API object, with
/// its counts where the scans of complete replies read them.
fn complete_native_reply() -> impl Strategy<Value = Value> {
    let titan_result = (count(), tricky_text()).prop_map(
        |(n, text)| json!({"tokenCount": n, "outputText": text, "completionReason": "FINISH"}),
    );
    prop_oneof![
        (claude_usage_object(), tricky_text()).prop_map(|(usage, text)| json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": usage,
        })),
        (proptest::option::of(count()), vec(titan_result, 0..3)).prop_map(|(input, results)| {
            let mut v = json!({"results": results});
            if let Some(n) = input {
                v["inputTextTokenCount"] = json!(n);
            }
            v
        }),
        (
            proptest::option::of(responses_usage_object()),
            tricky_text()
        )
            .prop_map(|(usage, text)| json!({
                "id": "resp_1", "object": "response", "status": "completed",
                "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}],
                "usage": usage,
            })),
    ]
}

/// The usage serde_json reads from a complete native reply, as the gateway counts it.
fn native_usage_of_value(v: &Value) -> Option<Usage> {
    let n = |v: &Value, k: &str| count_or(v, k, 0);
    if v.get("type").is_some() {
        let u = &v["usage"];
        return Some(Usage::from_parts(
            n(u, "input_tokens"),
            n(u, "output_tokens"),
            n(u, "cache_read_input_tokens"),
            n(u, "cache_creation_input_tokens"),
        ));
    }
    if let Some(results) = v.get("results") {
        v.get("inputTextTokenCount")?;
        let output = results
            .as_array()
            .unwrap()
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(n(r, "tokenCount")));
        return Some(Usage::from_parts(n(v, "inputTextTokenCount"), output, 0, 0));
    }
    responses_usage_of_value(v)
}

/// The usage serde_json reads from a Responses API object's `usage`, as the gateway counts it.
fn responses_usage_of_value(v: &Value) -> Option<Usage> {
    let n = |v: &Value, k: &str| count_or(v, k, 0);
    let u = v.get("usage").filter(|u| !u.is_null())?;
    let cached = n(&u["input_tokens_details"], "cached_tokens");
    let mut usage = Usage::from_parts(
        n(u, "input_tokens").saturating_sub(cached),
        n(u, "output_tokens"),
        cached,
        0,
    );
    let reasoning = n(&u["output_tokens_details"], "reasoning_tokens");
    if reasoning > 0 {
        usage.completion_tokens_details = Some(json!({"reasoning_tokens": reasoning}));
    }
    Some(usage)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_relayed_complete_native_reply_is_counted_as_serde_json_reads_it(
        reply in complete_native_reply(),
        picks in vec(any::<u8>(), 1..64),
    ) {
        let text = written_unusually(&reply, &picks);
        let bytes = text.as_bytes();
        let usage = if reply.get("type").is_some() {
            scanned(scan::claude_message_usage(bytes), &text)?
        } else if reply.get("results").is_some() {
            scanned(scan::titan_result_usage(bytes), &text)?
        } else {
            scanned(scan::responses_object_usage(bytes), &text)?
        };
        prop_assert_eq!(usage, native_usage_of_value(&reply), "{}", text);
    }

    #[test]
    fn a_spliced_model_is_the_one_serde_json_reads(
        body in valid_openai(),
        model in "[a-z0-9.:-]{1,20}",
        picks in vec(any::<u8>(), 1..64),
    ) {
        let text = written_unusually(&body, &picks);
        let value = serde_json::to_vec(&model).unwrap();
        let spliced = scan::with_member(&bytes::Bytes::from(text.clone()), "model", &value)
            .ok_or_else(|| TestCaseError::fail(format!("no model in {text}")))?;
        let read: Value = serde_json::from_slice(&spliced).unwrap();
        let mut expected = body.clone();
        expected["model"] = json!(model);
        prop_assert_eq!(read, expected, "{}", text);
    }
}

/// One Responses API stream event: a known type or another, with the response (and its usage)
/// on the events that carry one.
fn responses_stream_event() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "response.created",
            "response.output_text.delta",
            "response.completed",
            "response.incomplete",
            "response.failed",
            "error",
            "response.something_new",
        ]),
        proptest::option::of(responses_usage_object()),
        tricky_text(),
    )
        .prop_map(|(kind, usage, text)| {
            json!({
                "type": kind,
                "sequence_number": 3,
                "delta": text,
                "response": {"id": "resp_1", "object": "response", "usage": usage},
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_relayed_responses_event_is_read_as_serde_json_reads_it(
        event in responses_stream_event(),
        picks in vec(any::<u8>(), 1..64),
    ) {
        let text = written_unusually(&event, &picks);
        let facts = scanned(scan::responses_event(text.as_bytes()), &text)?;
        let kind = event["type"].as_str().unwrap();
        let named = kind != "response.something_new";
        prop_assert_eq!(facts.name, named.then_some(kind), "{}", text);
        let ends = ["response.completed", "response.incomplete", "response.failed"];
        prop_assert_eq!(facts.finished, ends.contains(&kind) || kind == "error", "{}", text);
        let usage = ends.contains(&kind).then(|| responses_usage_of_value(&event["response"])).flatten();
        prop_assert_eq!(facts.usage, usage, "{}", text);
    }
}
