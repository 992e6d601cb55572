//! Claude-grade translation (issue 13), feature by feature, across {OpenAI, Anthropic, Converse}
//! in × {Claude over InvokeModel, a Converse family, OpenAI} upstream × {complete, stream}: what
//! the fake upstream received, field by field, and what the client got, read back from each
//! client format into one shape ([`Got`]).
//!
//! The fakes reject what the real services reject (a cache point on a model without caching,
//! thinking with a temperature, a thinking block whose signature changed, a gateway extension
//! sent to OpenAI), so a 200 here also means the upstream would have taken the request.

mod common;

use common::fake::{self, Fake};
use common::*;
use serde_json::{json, Value};

/// The client's format.
#[derive(Debug, Clone, Copy, PartialEq)]
enum In {
    OpenAi,
    Anthropic,
    Converse,
}

const INGRESSES: [In; 3] = [In::OpenAi, In::Anthropic, In::Converse];

/// A Claude model with prompt caching, over InvokeModel.
const CLAUDE: &str = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";
/// A Converse family with prompt caching (system and conversation, not tools).
const NOVA: &str = "us.amazon.nova-pro-v1:0";

/// The path a client of `inbound` posts to for `model`.
fn path(inbound: In, model: &str, stream: bool) -> String {
    match inbound {
        In::OpenAi => "/v1/chat/completions".into(),
        In::Anthropic => "/v1/messages".into(),
        In::Converse => {
            let id =
                percent_encoding::utf8_percent_encode(model, percent_encoding::NON_ALPHANUMERIC);
            let op = if stream {
                "converse-stream"
            } else {
                "converse"
            };
            format!("/model/{id}/{op}")
        }
    }
}

/// Adds what every request of `inbound` needs: the model, streaming, a token limit.
fn finish_body(inbound: In, mut body: Value, model: &str, stream: bool) -> Value {
    let o = body.as_object_mut().unwrap();
    match inbound {
        In::OpenAi => {
            o.insert("model".into(), json!(model));
            o.insert("stream".into(), json!(stream));
            if stream {
                o.insert("stream_options".into(), json!({"include_usage": true}));
            }
            o.entry("max_tokens").or_insert(json!(200));
        }
        In::Anthropic => {
            o.insert("model".into(), json!(model));
            o.insert("stream".into(), json!(stream));
            o.entry("max_tokens").or_insert(json!(200));
        }
        In::Converse => {
            o.entry("inferenceConfig")
                .or_insert(json!({"maxTokens": 200}));
        }
    }
    body
}

/// What a client got, whatever its format.
#[derive(Debug, Default)]
struct Got {
    text: String,
    reasoning: String,
    /// Thinking blocks in canonical form: `{"type":"thinking","thinking","signature"}` /
    /// `{"type":"redacted_thinking","data"}`.
    thinking_blocks: Vec<Value>,
    /// `(id, name, input)`.
    tool_calls: Vec<(String, String, Value)>,
    /// In OpenAI terms.
    finish: String,
    /// `(prompt incl. cache, completion, cache read, cache write)`.
    usage: (u64, u64, u64, u64),
    /// The assistant turn as the client would send it back, in its own format.
    assistant_turn: Value,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn finish_from_claude(stop: &str) -> String {
    match stop {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "refusal" => "content_filter",
        _ => "stop",
    }
    .into()
}

fn finish_from_converse(stop: &str) -> String {
    match stop {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
    .into()
}

fn claude_usage(u_: &Value) -> (u64, u64, u64, u64) {
    let (read, write) = (
        u(&u_["cache_read_input_tokens"]),
        u(&u_["cache_creation_input_tokens"]),
    );
    (
        u(&u_["input_tokens"]) + read + write,
        u(&u_["output_tokens"]),
        read,
        write,
    )
}

fn converse_usage(u_: &Value, cell: &str) -> (u64, u64, u64, u64) {
    let (read, write) = (
        u(&u_["cacheReadInputTokens"]),
        u(&u_["cacheWriteInputTokens"]),
    );
    let prompt = u(&u_["inputTokens"]) + read + write;
    assert_eq!(
        u(&u_["totalTokens"]),
        prompt + u(&u_["outputTokens"]),
        "{cell}: totalTokens adds up"
    );
    (prompt, u(&u_["outputTokens"]), read, write)
}

/// Reads a Claude content array into `got`.
fn read_claude_content(content: &[Value], got: &mut Got) {
    for b in content {
        match b["type"].as_str().unwrap() {
            "text" => got.text.push_str(b["text"].as_str().unwrap()),
            "thinking" => {
                got.reasoning.push_str(b["thinking"].as_str().unwrap());
                got.thinking_blocks.push(
                    json!({"type":"thinking","thinking":b["thinking"],"signature":b["signature"]}),
                );
            }
            "redacted_thinking" => got
                .thinking_blocks
                .push(json!({"type":"redacted_thinking","data":b["data"]})),
            "tool_use" => got.tool_calls.push((
                b["id"].as_str().unwrap().into(),
                b["name"].as_str().unwrap().into(),
                b["input"].clone(),
            )),
            other => panic!("unexpected Claude block {other}"),
        }
    }
}

/// Reads a Converse content array into `got`.
fn read_converse_content(content: &[Value], got: &mut Got) {
    for b in content {
        if let Some(t) = b["text"].as_str() {
            got.text.push_str(t);
        } else if let Some(r) = b.get("reasoningContent") {
            if let Some(t) = r.get("reasoningText") {
                got.reasoning.push_str(t["text"].as_str().unwrap());
                got.thinking_blocks.push(json!({"type":"thinking","thinking":t["text"],"signature":t.get("signature").cloned().unwrap_or(Value::Null)}));
            } else {
                got.thinking_blocks
                    .push(json!({"type":"redacted_thinking","data":r["redactedContent"]}));
            }
        } else if let Some(t) = b.get("toolUse") {
            got.tool_calls.push((
                t["toolUseId"].as_str().unwrap().into(),
                t["name"].as_str().unwrap().into(),
                t["input"].clone(),
            ));
        } else {
            panic!("unexpected Converse block {b}");
        }
    }
}

/// Reads a reply of `inbound` (complete or streamed), checking each format's own rules on the way.
fn read(inbound: In, stream: bool, res: &TestResponse, cell: &str) -> Got {
    assert_eq!(res.status, 200, "{cell}: {}", res.text());
    let mut got = Got::default();
    match (inbound, stream) {
        (In::OpenAi, false) => {
            let r = res.json();
            let m = &r["choices"][0]["message"];
            got.text = m["content"].as_str().unwrap_or("").into();
            got.reasoning = m["reasoning_content"].as_str().unwrap_or("").into();
            got.thinking_blocks = m["thinking_blocks"].as_array().cloned().unwrap_or_default();
            for c in m["tool_calls"].as_array().into_iter().flatten() {
                let args: Value =
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                got.tool_calls.push((
                    c["id"].as_str().unwrap().into(),
                    c["function"]["name"].as_str().unwrap().into(),
                    args,
                ));
            }
            got.finish = r["choices"][0]["finish_reason"].as_str().unwrap().into();
            let us = &r["usage"];
            got.usage = (
                u(&us["prompt_tokens"]),
                u(&us["completion_tokens"]),
                u(&us["prompt_tokens_details"]["cached_tokens"]),
                u(&us["prompt_tokens_details"]["cache_write_tokens"]),
            );
            assert_eq!(u(&us["total_tokens"]), got.usage.0 + got.usage.1, "{cell}");
            let mut turn = json!({"role":"assistant","content": m["content"]});
            if let Some(t) = m.get("tool_calls") {
                turn["tool_calls"] = t.clone();
            }
            if let Some(t) = m.get("thinking_blocks") {
                turn["thinking_blocks"] = t.clone();
            }
            got.assistant_turn = turn;
        }
        (In::OpenAi, true) => {
            let data = res.sse_data();
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{cell}");
            let mut calls: Vec<(String, String, String)> = Vec::new();
            let mut open_thinking: Option<String> = None;
            for d in &data[..data.len() - 1] {
                let c: Value = serde_json::from_str(d).unwrap();
                assert!(c.get("error").is_none(), "{cell}: {c}");
                if let Some(us) = c.get("usage").filter(|u| !u.is_null()) {
                    got.usage = (
                        u(&us["prompt_tokens"]),
                        u(&us["completion_tokens"]),
                        u(&us["prompt_tokens_details"]["cached_tokens"]),
                        u(&us["prompt_tokens_details"]["cache_write_tokens"]),
                    );
                }
                let Some(ch) = c["choices"].get(0) else {
                    continue;
                };
                let delta = &ch["delta"];
                if let Some(t) = delta["content"].as_str() {
                    got.text.push_str(t);
                }
                if let Some(t) = delta["reasoning_content"].as_str() {
                    got.reasoning.push_str(t);
                    open_thinking.get_or_insert_with(String::new).push_str(t);
                }
                for b in delta["thinking_blocks"].as_array().into_iter().flatten() {
                    if b["type"] == "thinking" {
                        let text = open_thinking.take().unwrap_or_default();
                        got.thinking_blocks.push(
                            json!({"type":"thinking","thinking":text,"signature":b["signature"]}),
                        );
                    } else {
                        got.thinking_blocks.push(b.clone());
                    }
                }
                for t in delta["tool_calls"].as_array().into_iter().flatten() {
                    let i = t["index"].as_u64().unwrap() as usize;
                    if i == calls.len() {
                        calls.push((
                            t["id"].as_str().unwrap().into(),
                            t["function"]["name"].as_str().unwrap().into(),
                            String::new(),
                        ));
                    }
                    calls[i]
                        .2
                        .push_str(t["function"]["arguments"].as_str().unwrap_or(""));
                }
                if let Some(f) = ch["finish_reason"].as_str() {
                    got.finish = f.into();
                }
            }
            got.tool_calls = calls
                .iter()
                .map(|(id, n, a)| (id.clone(), n.clone(), serde_json::from_str(a).unwrap()))
                .collect();
            let mut turn = json!({"role":"assistant","content": if got.text.is_empty() { Value::Null } else { json!(got.text) }});
            if !calls.is_empty() {
                turn["tool_calls"] = json!(calls.iter().map(|(id, n, a)| json!({"id":id,"type":"function","function":{"name":n,"arguments":a}})).collect::<Vec<_>>());
            }
            if !got.thinking_blocks.is_empty() {
                turn["thinking_blocks"] = json!(got.thinking_blocks);
            }
            got.assistant_turn = turn;
        }
        (In::Anthropic, false) => {
            let r = res.json();
            read_claude_content(r["content"].as_array().unwrap(), &mut got);
            got.finish = finish_from_claude(r["stop_reason"].as_str().unwrap());
            got.usage = claude_usage(&r["usage"]);
            got.assistant_turn = json!({"role":"assistant","content": r["content"]});
        }
        (In::Anthropic, true) => {
            let events = res.sse_events();
            let mut blocks: Vec<Value> = Vec::new();
            let mut usage = json!({});
            for (name, d) in &events {
                assert_eq!(name.as_deref(), d["type"].as_str(), "{cell}");
                match d["type"].as_str().unwrap() {
                    "content_block_start" => {
                        assert_eq!(
                            d["index"].as_u64(),
                            Some(blocks.len() as u64),
                            "{cell}: indexes count up"
                        );
                        let mut b = d["content_block"].clone();
                        if b["type"] == "tool_use" {
                            b["input"] = json!("");
                        }
                        blocks.push(b);
                    }
                    "content_block_delta" => {
                        let b = blocks.last_mut().unwrap();
                        let delta = &d["delta"];
                        match delta["type"].as_str().unwrap() {
                            "text_delta" => {
                                b["text"] = json!(format!(
                                    "{}{}",
                                    b["text"].as_str().unwrap(),
                                    delta["text"].as_str().unwrap()
                                ))
                            }
                            "thinking_delta" => {
                                b["thinking"] = json!(format!(
                                    "{}{}",
                                    b["thinking"].as_str().unwrap(),
                                    delta["thinking"].as_str().unwrap()
                                ))
                            }
                            "signature_delta" => {
                                b["signature"] = json!(format!(
                                    "{}{}",
                                    b["signature"].as_str().unwrap_or(""),
                                    delta["signature"].as_str().unwrap()
                                ))
                            }
                            "input_json_delta" => {
                                b["input"] = json!(format!(
                                    "{}{}",
                                    b["input"].as_str().unwrap(),
                                    delta["partial_json"].as_str().unwrap()
                                ))
                            }
                            other => panic!("{cell}: {other}"),
                        }
                    }
                    "message_delta" => {
                        got.finish =
                            finish_from_claude(d["delta"]["stop_reason"].as_str().unwrap());
                        usage = d["usage"].clone();
                    }
                    "message_start" | "content_block_stop" | "message_stop" | "ping" => {}
                    other => panic!("{cell}: unexpected event {other}: {d}"),
                }
            }
            for b in &mut blocks {
                if b["type"] == "tool_use" {
                    let s = b["input"].as_str().unwrap();
                    b["input"] = if s.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(s).unwrap()
                    };
                }
            }
            read_claude_content(&blocks, &mut got);
            got.usage = claude_usage(&usage);
            got.assistant_turn = json!({"role":"assistant","content": blocks});
        }
        (In::Converse, false) => {
            let r = res.json();
            let content = r["output"]["message"]["content"].as_array().unwrap();
            read_converse_content(content, &mut got);
            got.finish = finish_from_converse(r["stopReason"].as_str().unwrap());
            got.usage = converse_usage(&r["usage"], cell);
            got.assistant_turn = r["output"]["message"].clone();
        }
        (In::Converse, true) => {
            let mut blocks: Vec<Value> = Vec::new();
            let mut index_of = std::collections::BTreeMap::new();
            for (kind, name, payload) in read_frames(&res.body) {
                assert_eq!(kind, "event", "{cell}: {payload}");
                match name.as_str() {
                    "contentBlockStart" => {
                        let tool = &payload["start"]["toolUse"];
                        index_of
                            .insert(payload["contentBlockIndex"].as_u64().unwrap(), blocks.len());
                        blocks.push(json!({"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"], "input": ""}}));
                    }
                    "contentBlockDelta" => {
                        let i = payload["contentBlockIndex"].as_u64().unwrap();
                        let delta = &payload["delta"];
                        let at = *index_of.entry(i).or_insert_with(|| {
                            blocks.push(if delta.get("text").is_some() {
                                json!({"text": ""})
                            } else {
                                json!({"reasoningContent": {"reasoningText": {"text": ""}}})
                            });
                            blocks.len() - 1
                        });
                        let b = &mut blocks[at];
                        if let Some(t) = delta["text"].as_str() {
                            b["text"] = json!(format!("{}{t}", b["text"].as_str().unwrap()));
                        } else if let Some(r) = delta.get("reasoningContent") {
                            if let Some(t) = r["text"].as_str() {
                                let cur = b["reasoningContent"]["reasoningText"]["text"]
                                    .as_str()
                                    .unwrap_or("")
                                    .to_owned();
                                b["reasoningContent"]["reasoningText"]["text"] = json!(cur + t);
                            } else if let Some(s) = r["signature"].as_str() {
                                b["reasoningContent"]["reasoningText"]["signature"] = json!(s);
                            } else if let Some(d) = r.get("redactedContent") {
                                *b = json!({"reasoningContent": {"redactedContent": d}});
                            }
                        } else if let Some(t) = delta["toolUse"]["input"].as_str() {
                            b["toolUse"]["input"] =
                                json!(format!("{}{t}", b["toolUse"]["input"].as_str().unwrap()));
                        } else {
                            panic!("{cell}: delta {delta}");
                        }
                    }
                    "messageStop" => {
                        got.finish = finish_from_converse(payload["stopReason"].as_str().unwrap())
                    }
                    "metadata" => got.usage = converse_usage(&payload["usage"], cell),
                    "messageStart" | "contentBlockStop" => {}
                    other => panic!("{cell}: unexpected event {other}"),
                }
            }
            for b in &mut blocks {
                if let Some(s) = b["toolUse"]["input"].as_str() {
                    b["toolUse"]["input"] = if s.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(s).unwrap()
                    };
                }
            }
            read_converse_content(&blocks, &mut got);
            got.assistant_turn = json!({"role": "assistant", "content": blocks});
        }
    }
    got
}

/// (message type, event/exception type, payload) of each frame of an event-stream body.
fn read_frames(mut body: &[u8]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let msg = aws_smithy_eventstream::frame::read_message_from(&mut body).unwrap();
        let h = |n: &str| {
            msg.headers()
                .iter()
                .find(|h| h.name().as_str() == n)
                .map(|h| h.value().as_string().unwrap().as_str().to_owned())
        };
        out.push((
            h(":message-type").unwrap(),
            h(":event-type").or_else(|| h(":exception-type")).unwrap(),
            serde_json::from_slice(msg.payload()).unwrap(),
        ));
    }
    out
}

/// Posts `body` for `inbound` and returns the reply and what the upstream received.
async fn call(
    gw: &TestGateway,
    upstream: &Fake,
    inbound: In,
    model: &str,
    stream: bool,
    body: Value,
    cell: &str,
) -> (Got, Value) {
    let body = finish_body(inbound, body, model, stream);
    let before = upstream.count();
    let res = post(gw, &path(inbound, model, stream), &body).await;
    let got = read(inbound, stream, &res, cell);
    let sent = upstream.requests();
    assert_eq!(sent.len(), before + 1, "{cell}: one upstream call");
    (got, sent.last().unwrap().json())
}

// ------------------------------------------------------------------------------------------------
// 1. Prompt caching

/// The same cached prompt in each client format: a cached system prompt, a cached document part
/// (one hour) before the question, and a cached tool definition.
fn cached_prompt(inbound: In) -> Value {
    let schema = json!({"type":"object","properties":{"q":{"type":"string"}}});
    match inbound {
        In::OpenAi => json!({
            "messages": [
                {"role":"system","content":[{"type":"text","text":"Long stable rules.","cache_control":{"type":"ephemeral"}}]},
                {"role":"user","content":[{"type":"text","text":"A long document.","cache_control":{"type":"ephemeral","ttl":"1h"}},
                    {"type":"text","text":"Summarise it"}]}],
            "tools": [{"type":"function","function":{"name":"lookup","description":"Look up","parameters":schema},
                "cache_control":{"type":"ephemeral"}}]
        }),
        In::Anthropic => json!({
            "system": [{"type":"text","text":"Long stable rules.","cache_control":{"type":"ephemeral"}}],
            "messages": [{"role":"user","content":[{"type":"text","text":"A long document.","cache_control":{"type":"ephemeral","ttl":"1h"}},
                {"type":"text","text":"Summarise it"}]}],
            "tools": [{"name":"lookup","description":"Look up","input_schema":schema,"cache_control":{"type":"ephemeral"}}]
        }),
        In::Converse => json!({
            "system": [{"text":"Long stable rules."},{"cachePoint":{"type":"default"}}],
            "messages": [{"role":"user","content":[{"text":"A long document."},{"cachePoint":{"type":"default","ttl":"1h"}},
                {"text":"Summarise it"}]}],
            "toolConfig": {"tools": [{"toolSpec":{"name":"lookup","description":"Look up","inputSchema":{"json":schema}}},
                {"cachePoint":{"type":"default"}}]}
        }),
    }
}

#[tokio::test]
async fn prompt_caching_across_formats_and_upstreams() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    for inbound in INGRESSES {
        for model in [CLAUDE, NOVA, "gpt-4o-cached"] {
            for stream in [false, true] {
                let cell = format!("caching: {inbound:?} in → {model}, stream={stream}");
                let (got, sent) = call(
                    &gw,
                    &upstream,
                    inbound,
                    model,
                    stream,
                    cached_prompt(inbound),
                    &cell,
                )
                .await;
                match model {
                    CLAUDE => {
                        assert_eq!(
                            sent["system"],
                            json!([{"type":"text","text":"Long stable rules.","cache_control":{"type":"ephemeral"}}]),
                            "{cell}"
                        );
                        assert_eq!(
                            sent["messages"][0]["content"],
                            json!([{"type":"text","text":"A long document.","cache_control":{"type":"ephemeral","ttl":"1h"}},
                                {"type":"text","text":"Summarise it"}]),
                            "{cell}"
                        );
                        assert_eq!(
                            sent["tools"][0]["cache_control"],
                            json!({"type":"ephemeral"}),
                            "{cell}"
                        );
                        // 12 fresh + 100 read + 20 written; 9 out.
                        assert_eq!(got.usage, (132, 9, 100, 20), "{cell}");
                    }
                    NOVA => {
                        assert_eq!(
                            sent["system"],
                            json!([{"text":"Long stable rules."},{"cachePoint":{"type":"default"}}]),
                            "{cell}"
                        );
                        assert_eq!(
                            sent["messages"][0]["content"],
                            json!([{"text":"A long document."},{"cachePoint":{"type":"default","ttl":"1h"}},{"text":"Summarise it"}]),
                            "{cell}"
                        );
                        assert_eq!(
                            sent["toolConfig"]["tools"].as_array().unwrap().len(),
                            1,
                            "{cell}: Nova caches no tools, so its cache point is dropped"
                        );
                        assert_eq!(got.usage, (140, 5, 100, 20), "{cell}");
                    }
                    _ => {
                        let text = sent.to_string();
                        assert!(
                            !text.contains("cache_control") && !text.contains("cachePoint"),
                            "{cell}: {text}"
                        );
                        // OpenAI's own cache hits, in the client's terms.
                        assert_eq!(got.usage, (11, 7, 8, 0), "{cell}");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn cache_points_are_dropped_for_models_without_caching() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    for inbound in INGRESSES {
        for model in [
            "anthropic.claude-3-haiku-20240307-v1:0",
            "meta.llama3-1-70b-instruct-v1:0",
        ] {
            for stream in [false, true] {
                let cell = format!("no caching: {inbound:?} in → {model}, stream={stream}");
                let (got, sent) = call(
                    &gw,
                    &upstream,
                    inbound,
                    model,
                    stream,
                    cached_prompt(inbound),
                    &cell,
                )
                .await;
                let text = sent.to_string();
                assert!(
                    !text.contains("cache_control") && !text.contains("cachePoint"),
                    "{cell}: {text}"
                );
                assert_eq!(got.usage.3, 0, "{cell}");
            }
        }
    }
}

#[tokio::test]
async fn five_cache_points_or_a_bad_ttl_are_a_400_before_any_upstream() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    let five: Vec<Value> = (0..5)
        .map(|i| json!({"role":"user","content":[{"type":"text","text":format!("part {i}"),"cache_control":{"type":"ephemeral"}}]}))
        .collect();
    for model in [CLAUDE, NOVA] {
        let res = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model":model,"messages":five}),
        )
        .await;
        assert_eq!(res.status, 400, "{model}: {}", res.text());
        assert_eq!(res.json()["error"]["param"], "messages");
        let res = post(&gw, "/v1/messages", &json!({"model":model,"max_tokens":10,
            "messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral","ttl":"2h"}}]}]})).await;
        assert_eq!(res.status, 400, "{model}: {}", res.text());
        assert_eq!(res.json()["type"], "error");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn automatic_caching_marks_the_system_prompt_and_tools_of_configured_models() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |c| {
        c.prompt_caching.auto = vec!["us.anthropic.".into()]
    })
    .await;
    let tools = json!([{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}]);
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":CLAUDE,"tools":tools,
        "messages":[{"role":"system","content":"Rules."},{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests().last().unwrap().json();
    assert_eq!(
        sent["system"],
        json!([{"type":"text","text":"Rules.","cache_control":{"type":"ephemeral"}}])
    );
    assert_eq!(
        sent["tools"][0]["cache_control"],
        json!({"type":"ephemeral"})
    );
    assert_eq!(
        res.json()["usage"]["prompt_tokens_details"]["cache_write_tokens"],
        20
    );
    // A native Anthropic body is re-encoded to carry them too.
    let res = post(
        &gw,
        "/v1/messages",
        &json!({"model":CLAUDE,"max_tokens":50,"system":"Rules.",
        "messages":[{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests().last().unwrap().json();
    assert_eq!(
        sent["system"],
        json!([{"type":"text","text":"Rules.","cache_control":{"type":"ephemeral"}}])
    );
    // Other models, and requests with breakpoints of their own, are left alone.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"anthropic.claude-3-7-sonnet-20250219-v1:0",
        "messages":[{"role":"system","content":"Rules."},{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        upstream.requests().last().unwrap().json()["system"],
        "Rules."
    );
    let res = post(&gw, "/v1/chat/completions", &json!({"model":CLAUDE,"messages":[{"role":"system","content":"Rules."},
        {"role":"user","content":[{"type":"text","text":"Hi","cache_control":{"type":"ephemeral"}}]}]})).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        upstream.requests().last().unwrap().json()["system"],
        "Rules."
    );
}

#[tokio::test]
async fn cached_tokens_count_in_the_token_budget_and_the_metrics() {
    use open_bedrock_server::rate_limit::{RateLimitConfig, RateLimiter};
    use std::num::{NonZeroU32, NonZeroU64};
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.bedrock.enabled = true;
    let mut limits = RateLimitConfig::new(NonZeroU32::new(1000).unwrap());
    // A cached Claude call processes 12 fresh + 100 cached + 20 written + 9 output = 141 tokens.
    limits.tokens_per_minute = Some(NonZeroU64::new(200).unwrap());
    let bedrock = bedrock_for(&upstream.url(), &config, None);
    let openai =
        open_bedrock_server::provider::OpenAiProvider::new(&config.openai, &config.timeouts)
            .unwrap();
    let gateway = open_bedrock_server::GatewayBuilder::from_config(&config)
        .openai(openai)
        .bedrock(bedrock)
        .rate_limiter(RateLimiter::new(&limits).unwrap())
        .build();
    let gw = start_service(gateway).await;
    let body = finish_body(In::OpenAi, cached_prompt(In::OpenAi), CLAUDE, false);
    assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status, 200);
    assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status, 200);
    let res = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(
        res.status,
        429,
        "282 tokens charged against a budget of 200: {}",
        res.text()
    );
    let text = send(http::Method::GET, &gw.url("/metrics"), Some(KEY), None)
        .await
        .text();
    for needle in [
        format!(r#"obs_tokens_total{{direction="input",model="{CLAUDE}",provider="bedrock"}} 264"#),
        format!(
            r#"obs_tokens_total{{direction="cache_read",model="{CLAUDE}",provider="bedrock"}} 200"#
        ),
        format!(
            r#"obs_tokens_total{{direction="cache_write",model="{CLAUDE}",provider="bedrock"}} 40"#
        ),
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
}
