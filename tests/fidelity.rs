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

/// Appends a streamed piece to the string accumulated so far.
fn append(target: &mut Value, piece: &Value) {
    let joined = format!(
        "{}{}",
        target.as_str().unwrap_or(""),
        piece.as_str().unwrap()
    );
    *target = Value::String(joined);
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
                        let (key, piece) = match delta["type"].as_str().unwrap() {
                            "text_delta" => ("text", "text"),
                            "thinking_delta" => ("thinking", "thinking"),
                            "signature_delta" => ("signature", "signature"),
                            "input_json_delta" => ("input", "partial_json"),
                            other => panic!("{cell}: {other}"),
                        };
                        append(&mut b[key], &delta[piece]);
                    }
                    // As the Anthropic SDKs accumulate it: `message_start`'s usage, updated by
                    // the members `message_delta` carries (Bedrock's own stream, relayed, puts
                    // the input counts in the first and the output count in the second).
                    "message_start" => usage = d["message"]["usage"].clone(),
                    "message_delta" => {
                        got.finish =
                            finish_from_claude(d["delta"]["stop_reason"].as_str().unwrap());
                        for (k, v) in d["usage"].as_object().unwrap() {
                            if !v.is_null() {
                                usage[k] = v.clone();
                            }
                        }
                    }
                    "content_block_stop" | "message_stop" | "ping" => {}
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
                        if delta.get("text").is_some() {
                            append(&mut b["text"], &delta["text"]);
                        } else if let Some(r) = delta.get("reasoningContent") {
                            let text = &mut b["reasoningContent"]["reasoningText"];
                            if r.get("text").is_some() {
                                append(&mut text["text"], &r["text"]);
                            } else if r.get("signature").is_some() {
                                text["signature"] = r["signature"].clone();
                            } else if let Some(d) = r.get("redactedContent") {
                                *b = json!({"reasoningContent": {"redactedContent": d}});
                            }
                        } else if delta["toolUse"].get("input").is_some() {
                            append(&mut b["toolUse"]["input"], &delta["toolUse"]["input"]);
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

/// An OpenAI-dialect 400 naming `param`.
fn assert_openai_400(res: &TestResponse, param: &str) {
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.json()["error"]["param"], param, "{}", res.text());
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
                let body = cached_prompt(inbound);
                let (got, sent) = call(&gw, &upstream, inbound, model, stream, body, &cell).await;
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
                let body = cached_prompt(inbound);
                let (got, sent) = call(&gw, &upstream, inbound, model, stream, body, &cell).await;
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

// ------------------------------------------------------------------------------------------------
// 2. Extended thinking / reasoning

/// Claude over Converse (a route override sends this profile to Converse).
const CLAUDE_CONVERSE: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";
/// A reasoning model on Converse that does not sign its reasoning.
const DEEPSEEK: &str = "us.deepseek.r1-v1:0";
/// An OpenAI reasoning model.
const O_SERIES: &str = "o3-mini";

async fn thinking_gateway(upstream: &Fake) -> TestGateway {
    start_full(upstream, |c| {
        c.routes.push(
            open_bedrock_server::config::RouteConfig::new(
                "us.anthropic.claude-sonnet-4",
                open_bedrock_server::config::RouteProvider::Bedrock,
            )
            .with_family(open_bedrock_server::route::BedrockFamily::Converse),
        );
    })
    .await
}

fn user_turn(inbound: In, text: &str) -> Value {
    match inbound {
        In::Converse => json!({"role":"user","content":[{"text":text}]}),
        _ => json!({"role":"user","content":text}),
    }
}

fn tool_result_turn(inbound: In, id: &str, text: &str) -> Value {
    match inbound {
        In::OpenAi => json!({"role":"tool","tool_call_id":id,"content":text}),
        In::Anthropic => {
            json!({"role":"user","content":[{"type":"tool_result","tool_use_id":id,"content":text}]})
        }
        In::Converse => {
            json!({"role":"user","content":[{"toolResult":{"toolUseId":id,"content":[{"text":text}]}}]})
        }
    }
}

/// A conversation with the weather tool and thinking on (2048 tokens), in the client's format.
fn thinking_request(inbound: In, messages: Vec<Value>) -> Value {
    let schema =
        json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]});
    match inbound {
        In::OpenAi => json!({"messages":messages,"max_tokens":4000,"reasoning_effort":"low",
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":schema}}]}),
        In::Anthropic => {
            json!({"messages":messages,"max_tokens":4000,"thinking":{"type":"enabled","budget_tokens":2048},
            "tools":[{"name":"get_weather","input_schema":schema}]})
        }
        In::Converse => json!({"messages":messages,"inferenceConfig":{"maxTokens":4000},
            "additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":2048}},
            "toolConfig":{"tools":[{"toolSpec":{"name":"get_weather","inputSchema":{"json":schema}}}]}}),
    }
}

#[tokio::test]
async fn a_two_turn_tool_loop_with_thinking_through_every_ingress() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = thinking_gateway(&upstream).await;
    let thought = "Thinking about: Weather in Paris?";
    let signature = fake::fake_signature(thought);
    for inbound in INGRESSES {
        for model in [CLAUDE, CLAUDE_CONVERSE, DEEPSEEK, O_SERIES] {
            for stream in [false, true] {
                let cell = format!("thinking: {inbound:?} in → {model}, stream={stream}");
                let first = vec![user_turn(inbound, "Weather in Paris?")];
                let body = thinking_request(inbound, first.clone());
                let (got, sent) = call(&gw, &upstream, inbound, model, stream, body, &cell).await;
                // What the upstream was asked for, in its own spelling.
                match model {
                    CLAUDE => {
                        assert_eq!(
                            sent["thinking"],
                            json!({"type":"enabled","budget_tokens":2048}),
                            "{cell}"
                        );
                        assert_eq!(sent["max_tokens"], 4000, "{cell}");
                    }
                    CLAUDE_CONVERSE => {
                        assert_eq!(
                            sent["additionalModelRequestFields"],
                            json!({"thinking":{"type":"enabled","budget_tokens":2048}}),
                            "{cell}"
                        );
                        assert_eq!(sent["inferenceConfig"]["maxTokens"], 4000, "{cell}");
                    }
                    DEEPSEEK => assert_eq!(
                        sent["additionalModelRequestFields"],
                        json!({"reasoning_effort":"low"}),
                        "{cell}"
                    ),
                    _ => {
                        assert_eq!(sent["reasoning_effort"], "low", "{cell}");
                        assert!(sent.get("thinking").is_none(), "{cell}");
                    }
                }
                // What the client got: the reasoning, Claude's signature, then the tool call.
                assert_eq!(got.finish, "tool_calls", "{cell}");
                assert_eq!(got.tool_calls[0].1, "get_weather", "{cell}");
                assert_eq!(got.tool_calls[0].2, json!({"city":"Paris"}), "{cell}");
                match model {
                    CLAUDE | CLAUDE_CONVERSE => {
                        assert_eq!(got.reasoning, thought, "{cell}");
                        assert_eq!(
                            got.thinking_blocks,
                            vec![
                                json!({"type":"thinking","thinking":thought,"signature":signature})
                            ],
                            "{cell}"
                        );
                    }
                    DEEPSEEK => assert_eq!(got.reasoning, thought, "{cell}"),
                    _ => assert!(got.reasoning.is_empty(), "{cell}"),
                }
                // The second turn: the assistant turn as the client got it, then the tool's result.
                let id = got.tool_calls[0].0.clone();
                let second = vec![
                    first[0].clone(),
                    got.assistant_turn.clone(),
                    tool_result_turn(inbound, &id, "21C"),
                ];
                let cell2 = format!("{cell}, second turn");
                let body2 = thinking_request(inbound, second);
                let (got2, sent2) =
                    call(&gw, &upstream, inbound, model, stream, body2, &cell2).await;
                assert_eq!(got2.finish, "stop", "{cell2}");
                assert!(got2.text.starts_with("You said:"), "{cell2}: {got2:?}");
                match model {
                    CLAUDE => assert_eq!(
                        sent2["messages"][1]["content"][0],
                        json!({"type":"thinking","thinking":thought,"signature":signature}),
                        "{cell2}: the signed thinking block goes back first, unchanged"
                    ),
                    CLAUDE_CONVERSE => assert_eq!(
                        sent2["messages"][1]["content"][0],
                        json!({"reasoningContent":{"reasoningText":{"text":thought,"signature":signature}}}),
                        "{cell2}"
                    ),
                    _ => {
                        let text = sent2.to_string();
                        assert!(
                            !text.contains("reasoningContent") && !text.contains("thinking_blocks"),
                            "{cell2}: {text}"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn claudes_thinking_rules_are_a_400_before_bedrock() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = thinking_gateway(&upstream).await;
    for inbound in INGRESSES {
        for model in [CLAUDE, CLAUDE_CONVERSE] {
            let mut body = thinking_request(inbound, vec![user_turn(inbound, "Hi")]);
            match inbound {
                In::Converse => body["inferenceConfig"]["temperature"] = json!(0.5),
                _ => body["temperature"] = json!(0.5),
            }
            let body = finish_body(inbound, body, model, false);
            let res = post(&gw, &path(inbound, model, false), &body).await;
            assert_eq!(res.status, 400, "{inbound:?} → {model}: {}", res.text());
            assert!(res.text().contains("temperature"), "{}", res.text());
        }
    }
    // An explicit budget that does not fit the limit, and a tool turn sent back without its reasoning.
    let res = post(
        &gw,
        "/v1/messages",
        &json!({"model":CLAUDE,"max_tokens":2000,"thinking":{"type":"enabled","budget_tokens":2048},
        "messages":[{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_eq!(
        (res.status, res.json()["error"]["type"].clone()),
        (400, json!("invalid_request_error")),
        "{}",
        res.text()
    );
    let res = post(&gw, "/v1/chat/completions", &json!({"model":CLAUDE,"reasoning_effort":"low","messages":[
        {"role":"user","content":"Weather?"},
        {"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"t","content":"21C"}],
        "tools":[{"type":"function","function":{"name":"get_weather"}}]})).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.json()["error"]["param"], "messages");
    assert_eq!(upstream.count(), 0, "nothing reached Bedrock");
    // Titan cannot reason.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"amazon.titan-text-express-v1","reasoning_effort":"low",
        "messages":[{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_openai_400(&res, "reasoning_effort");
}

#[tokio::test]
async fn a_changed_signature_is_refused_by_claude() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = thinking_gateway(&upstream).await;
    let thought = "Thinking about: Weather?";
    let res = post(&gw, "/v1/chat/completions", &json!({"model":CLAUDE,"reasoning_effort":"low","messages":[
        {"role":"user","content":"Weather?"},
        {"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"get_weather","arguments":"{}"}}],
         "thinking_blocks":[{"type":"thinking","thinking":thought,"signature":"forged"}]},
        {"role":"tool","tool_call_id":"t","content":"21C"}],
        "tools":[{"type":"function","function":{"name":"get_weather"}}]})).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signature"));
    // The genuine signature and a redacted block pass.
    let res = post(&gw, "/v1/chat/completions", &json!({"model":CLAUDE,"reasoning_effort":"low","messages":[
        {"role":"user","content":"Weather?"},
        {"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"get_weather","arguments":"{}"}}],
         "thinking_blocks":[{"type":"thinking","thinking":thought,"signature":fake::fake_signature(thought)},
            {"type":"redacted_thinking","data":fake::FAKE_REDACTED}]},
        {"role":"tool","tool_call_id":"t","content":"21C"}],
        "tools":[{"type":"function","function":{"name":"get_weather"}}]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
}

#[tokio::test]
async fn redacted_reasoning_and_reasoning_tokens_reach_every_format() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = thinking_gateway(&upstream).await;
    // The fake redacts reasoning about a secret: the block is opaque data, kept exactly.
    for inbound in INGRESSES {
        for stream in [false, true] {
            let cell = format!("redacted: {inbound:?}, stream={stream}");
            let mut body = thinking_request(inbound, vec![user_turn(inbound, "Tell me a secret")]);
            match inbound {
                In::OpenAi => body.as_object_mut().unwrap().remove("tools"),
                In::Anthropic => body.as_object_mut().unwrap().remove("tools"),
                In::Converse => body.as_object_mut().unwrap().remove("toolConfig"),
            };
            let (got, _) = call(&gw, &upstream, inbound, CLAUDE, stream, body, &cell).await;
            assert_eq!(got.thinking_blocks.len(), 2, "{cell}: {got:?}");
            assert_eq!(
                got.thinking_blocks[1],
                json!({"type":"redacted_thinking","data":fake::FAKE_REDACTED}),
                "{cell}"
            );
            assert_eq!(got.text, "You said: Tell me a secret", "{cell}");
        }
    }
    // OpenAI reports reasoning tokens; OpenAI clients read them as OpenAI wrote them.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":O_SERIES,"reasoning_effort":"high",
        "messages":[{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_eq!(
        res.json()["usage"]["completion_tokens_details"]["reasoning_tokens"],
        5,
        "{}",
        res.text()
    );
    // An Anthropic-style thinking object reaches an o-series model as its nearest effort.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":O_SERIES,"thinking":{"type":"enabled","budget_tokens":20000},
        "messages":[{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        upstream.requests().last().unwrap().json()["reasoning_effort"],
        "high"
    );
}

// ------------------------------------------------------------------------------------------------
// 3. Structured outputs

fn answer_schema() -> Value {
    json!({"type":"object","properties":{"answer":{"type":"string"},"city":{"type":"string"}},"required":["answer","city"]})
}

/// A request for JSON that fits [`answer_schema`], in the client's own spelling.
fn structured_request(inbound: In, text: &str) -> Value {
    match inbound {
        In::OpenAi => json!({"messages":[{"role":"user","content":text}],
            "response_format":{"type":"json_schema","json_schema":{"name":"city_answer","schema":answer_schema()}}}),
        In::Anthropic => json!({"messages":[{"role":"user","content":text}],
            "output_format":{"type":"json_schema","schema":answer_schema()}}),
        In::Converse => json!({"messages":[{"role":"user","content":[{"text":text}]}],
            "outputConfig":{"textFormat":{"type":"json_schema","structure":{"jsonSchema":{
                "name":"city_answer","schema":answer_schema().to_string()}}}}}),
    }
}

#[tokio::test]
async fn json_schema_through_a_forced_tool_answers_as_content() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    let expected = json!({"answer":"You said: Weather in Paris?","city":"Paris"});
    for inbound in INGRESSES {
        let tool = if inbound == In::Anthropic {
            "output"
        } else {
            "city_answer"
        };
        for model in [CLAUDE, NOVA, "gpt-4o"] {
            for stream in [false, true] {
                let cell = format!("json_schema: {inbound:?} in → {model}, stream={stream}");
                let body = structured_request(inbound, "Weather in Paris?");
                let (got, sent) = call(&gw, &upstream, inbound, model, stream, body, &cell).await;
                match model {
                    CLAUDE => {
                        let t = sent["tools"].as_array().unwrap().last().unwrap();
                        assert_eq!(
                            (t["name"].clone(), t["input_schema"].clone()),
                            (json!(tool), answer_schema()),
                            "{cell}"
                        );
                        assert_eq!(
                            sent["tool_choice"],
                            json!({"type":"tool","name":tool}),
                            "{cell}"
                        );
                    }
                    NOVA => {
                        let t = &sent["toolConfig"]["tools"]
                            .as_array()
                            .unwrap()
                            .last()
                            .unwrap()["toolSpec"];
                        assert_eq!(
                            (t["name"].clone(), t["inputSchema"]["json"].clone()),
                            (json!(tool), answer_schema()),
                            "{cell}"
                        );
                        assert_eq!(
                            sent["toolConfig"]["toolChoice"],
                            json!({"tool":{"name":tool}}),
                            "{cell}"
                        );
                    }
                    _ => {
                        assert_eq!(sent["response_format"]["type"], "json_schema", "{cell}");
                        assert_eq!(
                            sent["response_format"]["json_schema"]["schema"],
                            answer_schema(),
                            "{cell}"
                        );
                        assert!(
                            sent.get("tools").is_none(),
                            "{cell}: OpenAI gets the schema as is"
                        );
                    }
                }
                let content: Value = serde_json::from_str(&got.text)
                    .unwrap_or_else(|e| panic!("{cell}: {e}: {:?}", got.text));
                assert_eq!(content, expected, "{cell}");
                assert_eq!(got.finish, "stop", "{cell}");
                assert!(got.tool_calls.is_empty(), "{cell}: {got:?}");
            }
        }
    }
}

#[tokio::test]
async fn client_tools_still_work_alongside_a_schema() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    for model in [CLAUDE, NOVA] {
        for stream in [false, true] {
            let cell = format!("tools + json_schema → {model}, stream={stream}");
            let mut first = structured_request(In::OpenAi, "Weather in Paris?");
            first["tools"] = json!([{"type":"function","function":{"name":"get_weather",
                "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]);
            let body = first.clone();
            let (got, sent) = call(&gw, &upstream, In::OpenAi, model, stream, body, &cell).await;
            assert_eq!(got.finish, "tool_calls", "{cell}: the client's tool first");
            assert_eq!(got.tool_calls[0].1, "get_weather", "{cell}");
            if model == CLAUDE {
                assert_eq!(sent["tool_choice"], json!({"type":"any"}), "{cell}");
            } else {
                assert_eq!(
                    sent["toolConfig"]["toolChoice"],
                    json!({"any":{}}),
                    "{cell}"
                );
            }
            let mut second = first.clone();
            second["messages"] = json!([first["messages"][0], got.assistant_turn,
                {"role":"tool","tool_call_id":got.tool_calls[0].0,"content":"21C"}]);
            let (got, _) = call(&gw, &upstream, In::OpenAi, model, stream, second, &cell).await;
            assert_eq!(got.finish, "stop", "{cell}");
            let content: Value = serde_json::from_str(&got.text).unwrap();
            assert_eq!(content["city"], "Paris", "{cell}");
        }
    }
}

#[tokio::test]
async fn json_object_by_instruction_and_prefill() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    for stream in [false, true] {
        let cell = format!("json_object → Claude, stream={stream}");
        let body = json!({"messages":[{"role":"user","content":"Hello"}],"response_format":{"type":"json_object"}});
        let (got, sent) = call(&gw, &upstream, In::OpenAi, CLAUDE, stream, body, &cell).await;
        assert!(
            sent["system"]
                .as_str()
                .unwrap()
                .contains("single valid JSON object"),
            "{cell}"
        );
        assert_eq!(
            sent["messages"].as_array().unwrap().last().unwrap(),
            &json!({"role":"assistant","content":[{"type":"text","text":"{"}]}),
            "{cell}: a prefill"
        );
        let content: Value =
            serde_json::from_str(&got.text).unwrap_or_else(|e| panic!("{cell}: {e}: {}", got.text));
        assert_eq!(
            content,
            json!({"answer":"You said: Hello"}),
            "{cell}: the `{{` is put back"
        );
    }
    // Nova: the instruction alone. A model that cannot be forced to a tool gets the schema as an
    // instruction; Titan cannot follow one at all.
    let sent_system = || {
        let sent = upstream.requests().last().unwrap().json();
        (
            sent["system"][0]["text"].as_str().unwrap_or("").to_owned(),
            sent,
        )
    };
    let body = json!({"model":NOVA,"messages":[{"role":"user","content":"Hello"}],"response_format":{"type":"json_object"}});
    assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status, 200);
    assert!(sent_system().0.contains("single valid JSON object"));
    let mut body = structured_request(In::OpenAi, "Hello");
    body["model"] = json!("meta.llama3-1-70b-instruct-v1:0");
    assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status, 200);
    let (system, sent) = sent_system();
    assert!(system.contains("JSON Schema"), "{sent}");
    assert!(sent.get("toolConfig").is_none(), "{sent}");
    body["model"] = json!("amazon.titan-text-express-v1");
    let res = post(&gw, "/v1/chat/completions", &body).await;
    assert_openai_400(&res, "response_format");
}

// ------------------------------------------------------------------------------------------------
// 4. Documents and images

/// A tiny PDF (its magic is what the fakes and the sniffing look at).
const PDF_B64: &str = "JVBERi0xLjcKJeLjz9MK";
/// A 1×1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// The same PDF and question in each client format, with citations on where the format has them.
fn document_request(inbound: In) -> Value {
    match inbound {
        In::OpenAi => json!({"messages":[{"role":"user","content":[
            {"type":"file","file":{"file_data":format!("data:application/pdf;base64,{PDF_B64}"),"filename":"Q3 report.pdf"}},
            {"type":"text","text":"Summarise this"}]}]}),
        In::Anthropic => json!({"messages":[{"role":"user","content":[
            {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":PDF_B64},
             "title":"Q3 report","context":"Finance","citations":{"enabled":true}},
            {"type":"text","text":"Summarise this"}]}]}),
        In::Converse => json!({"messages":[{"role":"user","content":[
            {"document":{"format":"pdf","name":"Q3 report","source":{"bytes":PDF_B64},"context":"Finance","citations":{"enabled":true}}},
            {"text":"Summarise this"}]}]}),
    }
}

#[tokio::test]
async fn documents_across_formats_and_upstreams() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    for inbound in INGRESSES {
        let cites = inbound != In::OpenAi;
        for model in [CLAUDE, NOVA, "gpt-4o"] {
            for stream in [false, true] {
                let cell = format!("documents: {inbound:?} in → {model}, stream={stream}");
                let body = document_request(inbound);
                let (got, sent) = call(&gw, &upstream, inbound, model, stream, body, &cell).await;
                assert_eq!(got.text, "You said: Summarise this", "{cell}");
                let content = &sent["messages"][0]["content"];
                match model {
                    CLAUDE if inbound == In::Anthropic => assert_eq!(
                        content[0],
                        document_request(In::Anthropic)["messages"][0]["content"][0],
                        "{cell}: the native body as written"
                    ),
                    CLAUDE => {
                        let mut expected = json!({"type":"document","source":{"type":"base64","media_type":"application/pdf","data":PDF_B64}});
                        if cites {
                            expected["title"] = json!("Q3 report");
                            expected["context"] = json!("Finance");
                            expected["citations"] = json!({"enabled":true});
                        } else {
                            expected["title"] = json!("Q3 report.pdf");
                        }
                        assert_eq!(content[0], expected, "{cell}");
                    }
                    NOVA => {
                        let mut expected =
                            json!({"format":"pdf","name":"Q3 report","source":{"bytes":PDF_B64}});
                        if cites {
                            expected["context"] = json!("Finance");
                        }
                        assert_eq!(
                            content[0]["document"], expected,
                            "{cell}: Nova cites nothing"
                        );
                    }
                    _ => {
                        assert_eq!(content[0]["type"], "file", "{cell}");
                        assert_eq!(
                            content[0]["file"]["file_data"],
                            format!("data:application/pdf;base64,{PDF_B64}"),
                            "{cell}"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn text_documents_and_s3_sources() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |c| {
        c.bedrock
            .s3_buckets
            .insert("media-bucket".into(), "123456789012".into());
    })
    .await;
    let text_doc = json!({"model":"m","max_tokens":100,"messages":[{"role":"user","content":[
        {"type":"document","source":{"type":"text","media_type":"text/plain","data":"Line one."},"title":"notes"},
        {"type":"text","text":"Read it"}]}]});
    for (model, expected) in [
        (
            "anthropic.claude-3-haiku-20240307-v1:0",
            json!({"type":"document","source":{"type":"text","media_type":"text/plain","data":"Line one."},"title":"notes"}),
        ),
        (
            NOVA,
            json!({"document":{"format":"txt","name":"notes","source":{"bytes":"TGluZSBvbmUu"}}}),
        ),
        ("gpt-4o", json!({"type":"text","text":"Line one."})),
    ] {
        let mut body = text_doc.clone();
        body["model"] = json!(model);
        let res = post(&gw, "/v1/messages", &body).await;
        assert_eq!(res.status, 200, "{model}: {}", res.text());
        let sent = upstream.requests().last().unwrap().json();
        assert_eq!(sent["messages"][0]["content"][0], expected, "{model}");
    }
    // s3:// sources: only configured buckets, always with their owner; never for InvokeModel.
    let image = |bucket: &str| {
        json!({"messages":[{"role":"user","content":[
        {"image":{"format":"png","source":{"s3Location":{"uri":format!("s3://{bucket}/cat.png")}}}},{"text":"What is it?"}]}]})
    };
    let nova = path(In::Converse, NOVA, false);
    let res = post(&gw, &nova, &image("media-bucket")).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests().last().unwrap().json();
    assert_eq!(
        sent["messages"][0]["content"][0]["image"]["source"],
        json!({"s3Location":{"uri":"s3://media-bucket/cat.png","bucketOwner":"123456789012"}})
    );
    let before = upstream.count();
    let res = post(&gw, &nova, &image("someone-elses")).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.headers["x-amzn-errortype"], "ValidationException");
    let res = post(&gw, "/v1/chat/completions", &json!({"model":CLAUDE,"messages":[{"role":"user","content":[
        {"type":"file","file":{"file_data":"s3://media-bucket/r.pdf","filename":"r.pdf"}},{"type":"text","text":"Q"}]}]})).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(upstream.count(), before, "nothing reached Bedrock");
}

/// A media server on loopback: `/cat.png`, `/report.pdf`, `/hop` (→ `/cat.png`), `/away`
/// (→ `localhost`, not an allowed host), `/big`, `/page` (HTML declared as PNG), `/slow`.
async fn media_server() -> Fake {
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .unwrap();
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(PDF_B64)
        .unwrap();
    Fake::start(std::sync::Arc::new(move |req: &fake::Recorded, _| {
        let body = |content_type: &'static str, bytes: Vec<u8>| fake::Reply::Body {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: bytes.into(),
        };
        let redirect = |to: String| fake::Reply::Body {
            status: 302,
            content_type: "text/plain",
            headers: vec![("location", to)],
            body: bytes::Bytes::new(),
        };
        let port = req
            .header("host")
            .and_then(|h| h.rsplit(':').next())
            .unwrap_or("0")
            .to_owned();
        match req.path.as_str() {
            "/cat.png" => body("application/octet-stream", png.clone()),
            "/report.pdf" => body("application/pdf", pdf.clone()),
            "/hop" => redirect("/cat.png".into()),
            "/away" => redirect(format!("http://localhost:{port}/cat.png")),
            "/big" => body("image/png", [png.clone(), vec![0; 2 << 20]].concat()),
            "/page" => body("image/png", b"<html>not an image</html>".to_vec()),
            "/slow" => fake::Reply::Delayed(
                std::time::Duration::from_secs(3),
                Box::new(body("image/png", png.clone())),
            ),
            _ => fake::Reply::json(404, json!({})),
        }
    }))
    .await
}

#[tokio::test]
async fn remote_media_is_fetched_only_within_bounds() {
    let media = media_server().await;
    let upstream = Fake::start(fake::smart()).await;
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", media.addr.port());
    let fetching = |allow_private: bool| {
        move |c: &mut open_bedrock_server::config::Config| {
            c.media_fetch.enabled = true;
            c.media_fetch.allowed_hosts = vec!["127.0.0.1".into()];
            c.media_fetch.allow_private_addresses = allow_private;
            c.media_fetch.max_bytes = 1 << 20;
            c.media_fetch.timeout = std::time::Duration::from_millis(800);
        }
    };
    let gw = start_full(&upstream, fetching(true)).await;
    let image = |u: String| {
        json!({"model":CLAUDE,"messages":[{"role":"user","content":[
        {"type":"image_url","image_url":{"url":u}},{"type":"text","text":"What is it?"}]}]})
    };
    // An image, straight and through a redirect; a PDF; an Anthropic url source.
    for p in ["/cat.png", "/hop"] {
        let res = post(&gw, "/v1/chat/completions", &image(url(p))).await;
        assert_eq!(res.status, 200, "{p}: {}", res.text());
        let sent = upstream.requests().last().unwrap().json();
        assert_eq!(
            sent["messages"][0]["content"][0]["source"],
            json!({"type":"base64","media_type":"image/png","data":PNG_B64}),
            "{p}: the type sniffed from the bytes, not the declared octet-stream"
        );
    }
    let res = post(&gw, "/v1/chat/completions", &json!({"model":NOVA,"messages":[{"role":"user","content":[
        {"type":"file","file":{"file_data":url("/report.pdf"),"filename":"report.pdf"}},{"type":"text","text":"Q"}]}]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests().last().unwrap().json();
    assert_eq!(
        sent["messages"][0]["content"][0]["document"]["source"]["bytes"],
        PDF_B64
    );
    let res = post(&gw, "/v1/messages", &json!({"model":CLAUDE,"max_tokens":50,"messages":[{"role":"user","content":[
        {"type":"image","source":{"type":"url","url":url("/cat.png")}},{"type":"text","text":"What is it?"}]}]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        upstream.requests().last().unwrap().json()["messages"][0]["content"][0]["source"]["data"],
        PNG_B64
    );
    // Out of bounds: a 400 naming what, before any upstream call.
    let before = upstream.count();
    for (p, why) in [
        ("/away", "not an allowed host"),
        ("/big", "bytes"),
        ("/page", "not an image"),
        ("/slow", "longer than"),
    ] {
        let res = post(&gw, "/v1/chat/completions", &image(url(p))).await;
        assert_eq!(res.status, 400, "{p}: {}", res.text());
        let e = res.json();
        assert_eq!(e["error"]["code"], "media_fetch_failed", "{p}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(why),
            "{p}: {e}"
        );
    }
    let res = post(
        &gw,
        "/v1/chat/completions",
        &image("http://example.com/cat.png".into()),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(upstream.count(), before);
    // Loopback is refused unless allowed; without fetching, URLs stay a 400.
    let strict = start_full(&upstream, fetching(false)).await;
    let res = post(&strict, "/v1/chat/completions", &image(url("/cat.png"))).await;
    assert_eq!(
        (res.status, res.json()["error"]["code"].clone()),
        (400, json!("media_fetch_failed")),
        "{}",
        res.text()
    );
    let off = start_full(&upstream, |_| {}).await;
    let res = post(&off, "/v1/chat/completions", &image(url("/cat.png"))).await;
    assert_eq!(res.status, 400, "{}", res.text());
    // Fetched: directly, after the redirect, for the Anthropic client; never from a refused place.
    assert_eq!(
        media
            .requests()
            .iter()
            .filter(|r| r.path == "/cat.png")
            .count(),
        3
    );
}

// ------------------------------------------------------------------------------------------------
// 5. Guardrails

fn blocking_rule(prefix: &str) -> open_bedrock_server::config::GuardrailRule {
    open_bedrock_server::config::GuardrailRule {
        prefix: prefix.into(),
        identifier: fake::BLOCKING_GUARDRAIL.into(),
        version: "1".into(),
        trace: Some("enabled".into()),
    }
}

fn hello(inbound: In) -> Value {
    json!({"messages":[user_turn(inbound, "Hello")]})
}

#[tokio::test]
async fn a_configured_guardrail_intervenes_in_every_format() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |c| {
        c.guardrails.models = vec![
            blocking_rule("us.anthropic."),
            blocking_rule("us.amazon.nova"),
        ];
    })
    .await;
    for inbound in INGRESSES {
        for model in [CLAUDE, NOVA] {
            for stream in [false, true] {
                let cell = format!("guardrail: {inbound:?} in → {model}, stream={stream}");
                let body = hello(inbound);
                let (got, sent) = call(&gw, &upstream, inbound, model, stream, body, &cell).await;
                assert_eq!(got.text, fake::BLOCKED_MESSAGE, "{cell}");
                assert_eq!(got.finish, "content_filter", "{cell}");
                let rec = upstream.requests().last().unwrap().clone();
                if model == CLAUDE {
                    assert_eq!(
                        rec.header("x-amzn-bedrock-guardrailidentifier"),
                        Some(fake::BLOCKING_GUARDRAIL),
                        "{cell}"
                    );
                    assert_eq!(
                        rec.header("x-amzn-bedrock-guardrailversion"),
                        Some("1"),
                        "{cell}"
                    );
                    assert_eq!(
                        rec.header("x-amzn-bedrock-trace"),
                        Some("ENABLED"),
                        "{cell}"
                    );
                    assert!(sent.get("guardrailConfig").is_none(), "{cell}");
                } else {
                    let mut g = sent["guardrailConfig"].clone();
                    if stream {
                        // ConverseStream's own member; the SDK sends its default.
                        assert_eq!(
                            g.as_object_mut().unwrap().remove("streamProcessingMode"),
                            Some(json!("sync")),
                            "{cell}"
                        );
                    }
                    assert_eq!(
                        g,
                        json!({"guardrailIdentifier":fake::BLOCKING_GUARDRAIL,"guardrailVersion":"1","trace":"enabled"}),
                        "{cell}"
                    );
                }
            }
        }
    }
    // The trace, where the client asked for it (here: the rule did), in each format.
    let trace = fake::blocking_trace();
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":CLAUDE,"messages":[{"role":"user","content":"Hello"}]}),
    )
    .await;
    assert_eq!(res.json()["amazon-bedrock-trace"], trace);
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":NOVA,"stream":true,"messages":[{"role":"user","content":"Hello"}]}),
    )
    .await;
    let finish = res
        .sse_data()
        .into_iter()
        .filter(|d| d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(&d).unwrap())
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(finish["amazon-bedrock-trace"], trace, "{finish}");
    let res = post(
        &gw,
        "/v1/messages",
        &json!({"model":CLAUDE,"max_tokens":50,"messages":[{"role":"user","content":"Hello"}]}),
    )
    .await;
    assert_eq!(
        (
            res.json()["amazon-bedrock-guardrailAction"].clone(),
            res.json()["amazon-bedrock-trace"].clone()
        ),
        (json!("INTERVENED"), trace.clone())
    );
    let res = post(&gw, &path(In::Converse, NOVA, false), &hello(In::Converse)).await;
    assert_eq!(
        (
            res.json()["stopReason"].clone(),
            res.json()["trace"].clone()
        ),
        (json!("guardrail_intervened"), trace.clone())
    );
    let res = post(&gw, &path(In::Converse, CLAUDE, true), &hello(In::Converse)).await;
    let frames = read_frames(&res.body);
    assert_eq!(
        frames.iter().find(|f| f.1 == "messageStop").unwrap().2["stopReason"],
        "guardrail_intervened"
    );
    assert_eq!(frames.last().unwrap().2["trace"], trace);
}

#[tokio::test]
async fn per_request_guardrails_only_where_allowed() {
    let upstream = Fake::start(fake::smart()).await;
    let own = json!({"guardrailIdentifier":fake::BLOCKING_GUARDRAIL,"guardrailVersion":"DRAFT"});
    let strict = start_full(&upstream, |_| {}).await;
    let allowed = start_full(&upstream, |c| c.guardrails.allow_client = true).await;
    let openai = json!({"model":CLAUDE,"guardrailConfig":own,"messages":[{"role":"user","content":"Hello"}]});
    let converse =
        json!({"guardrailConfig":own,"messages":[{"role":"user","content":[{"text":"Hello"}]}]});
    let invoke_headers = [
        (
            "x-amzn-bedrock-guardrailidentifier",
            fake::BLOCKING_GUARDRAIL,
        ),
        ("x-amzn-bedrock-guardrailversion", "DRAFT"),
    ];
    let claude_body = bytes::Bytes::from(
        serde_json::to_vec(&json!({"anthropic_version":"bedrock-2023-05-31",
        "max_tokens":50,"messages":[{"role":"user","content":"Hello"}]}))
        .unwrap(),
    );
    let invoke_path = format!(
        "/model/{}/invoke",
        percent_encoding::utf8_percent_encode(CLAUDE, percent_encoding::NON_ALPHANUMERIC)
    );
    // Not allowed: a 400 in the route's dialect, nothing sent upstream.
    let before = upstream.count();
    assert_eq!(
        post(&strict, "/v1/chat/completions", &openai).await.json()["error"]["param"],
        "guardrailConfig"
    );
    let res = post(&strict, &path(In::Converse, NOVA, false), &converse).await;
    assert_eq!(
        (
            res.status,
            res.headers["x-amzn-errortype"].to_str().unwrap()
        ),
        (400, "ValidationException")
    );
    let res = send_raw(
        http::Method::POST,
        &strict.url(&invoke_path),
        Some(KEY),
        Some(claude_body.clone()),
        &invoke_headers,
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(upstream.count(), before);
    // Allowed: the client's guardrail is the one sent.
    let res = post(&allowed, "/v1/chat/completions", &openai).await;
    assert_eq!(
        res.json()["choices"][0]["finish_reason"],
        "content_filter",
        "{}",
        res.text()
    );
    assert_eq!(
        upstream
            .requests()
            .last()
            .unwrap()
            .header("x-amzn-bedrock-guardrailversion"),
        Some("DRAFT")
    );
    let res = post(&allowed, &path(In::Converse, NOVA, false), &converse).await;
    assert_eq!(
        res.json()["stopReason"],
        "guardrail_intervened",
        "{}",
        res.text()
    );
    let res = send_raw(
        http::Method::POST,
        &allowed.url(&invoke_path),
        Some(KEY),
        Some(claude_body),
        &invoke_headers,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let v: Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(
        (
            v["amazon-bedrock-guardrailAction"].clone(),
            v["content"][0]["text"].clone()
        ),
        (json!("INTERVENED"), json!(fake::BLOCKED_MESSAGE))
    );
    assert_eq!(
        upstream
            .requests()
            .last()
            .unwrap()
            .header("x-amzn-bedrock-guardrailidentifier"),
        Some(fake::BLOCKING_GUARDRAIL)
    );
    // A guardrail that lets the answer through; and no Bedrock guardrail for an OpenAI model.
    let mut passing = openai.clone();
    passing["guardrailConfig"]["guardrailIdentifier"] = json!("gr-allow");
    let res = post(&allowed, "/v1/chat/completions", &passing).await;
    assert_eq!(
        res.json()["choices"][0]["message"]["content"],
        "You said: Hello"
    );
    let mut gpt = openai.clone();
    gpt["model"] = json!("gpt-4o");
    let res = post(&allowed, "/v1/chat/completions", &gpt).await;
    assert_openai_400(&res, "guardrailConfig");
}

// ------------------------------------------------------------------------------------------------
// 6. n > 1 on Bedrock

#[tokio::test]
async fn n_choices_fan_out_to_n_bedrock_calls() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |c| c.bedrock.max_n = 3).await;
    for model in [CLAUDE, NOVA, "amazon.titan-text-express-v1"] {
        // Complete: three calls, three choices indexed in order, usage summed.
        let before = upstream.count();
        let res = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model":model,"n":3,"messages":[{"role":"user","content":"Hi"}]}),
        )
        .await;
        assert_eq!(res.status, 200, "{model}: {}", res.text());
        assert_eq!(upstream.count(), before + 3, "{model}");
        assert!(
            upstream.requests()[before..]
                .iter()
                .all(|r| r.json().get("n").is_none()),
            "{model}: n never reaches Bedrock"
        );
        let r = res.json();
        let indexes: Vec<u64> = r["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indexes, [0, 1, 2], "{model}");
        assert!(
            r["choices"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["message"]["content"] == "You said: Hi"),
            "{model}"
        );
        let single = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model":model,"messages":[{"role":"user","content":"Hi"}]}),
        )
        .await
        .json();
        for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            assert_eq!(
                r["usage"][key].as_u64().unwrap(),
                3 * single["usage"][key].as_u64().unwrap(),
                "{model}: {key}"
            );
        }
        // Streamed: the choices interleaved under one id, each finishing, one summed usage chunk.
        let res = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model":model,"n":3,"stream":true,
            "stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}),
        )
        .await;
        let data = res.sse_data();
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{model}");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(
            chunks.iter().all(|c| c["id"] == chunks[0]["id"]),
            "{model}: one id"
        );
        let mut texts = [String::new(), String::new(), String::new()];
        let mut finished = [false; 3];
        for c in &chunks {
            for ch in c["choices"].as_array().unwrap() {
                let i = ch["index"].as_u64().unwrap() as usize;
                texts[i].push_str(ch["delta"]["content"].as_str().unwrap_or(""));
                finished[i] |= ch["finish_reason"] == "stop";
            }
        }
        assert_eq!(
            texts,
            ["You said: Hi", "You said: Hi", "You said: Hi"],
            "{model}"
        );
        assert_eq!(finished, [true; 3], "{model}");
        let usage: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"] == json!([]))
            .collect();
        assert_eq!(usage.len(), 1, "{model}: one usage chunk");
        assert_eq!(
            usage[0]["usage"]["total_tokens"].as_u64().unwrap(),
            3 * single["usage"]["total_tokens"].as_u64().unwrap()
        );
    }
    // Beyond the maximum, or for a reply format with one choice: a 400 before any call.
    let before = upstream.count();
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":CLAUDE,"n":4,"messages":[{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_openai_400(&res, "n");
    let res = post(
        &gw,
        "/v1/chat/completions?target_format=bedrock_claude",
        &json!({"model":CLAUDE,"n":2,
        "messages":[{"role":"user","content":"Hi"}]}),
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(upstream.count(), before);
}
