//! The format matrix: {openai, bedrock_claude, bedrock_titan} in × {openai, bedrock_claude,
//! bedrock_titan} out × {OpenAI upstream, Bedrock Claude, Bedrock Titan, a Converse family} ×
//! {complete, streamed}, with field-level assertions on what the client got and what the upstream
//! received; then tools for every pair of formats that has them.

mod common;

use common::fake::{self, Fake};
use common::*;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
enum In {
    OpenAi,
    Claude,
    Titan,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    OpenAi,
    Claude,
    Titan,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Up {
    OpenAi,
    Claude,
    Titan,
    Converse,
}

impl Up {
    fn model(self) -> &'static str {
        match self {
            Up::OpenAi => "gpt-4o",
            Up::Claude => "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            Up::Titan => "amazon.titan-text-express-v1",
            Up::Converse => "amazon.nova-pro-v1:0",
        }
    }
}

fn request(inbound: In, out: Out, model: &str, stream: bool) -> Value {
    match inbound {
        In::OpenAi => json!({
            "model": model, "stream": stream, "max_tokens": 100,
            // Only OpenAI readers ask for usage; Claude and Titan streams carry it regardless.
            "stream_options": if stream && out == Out::OpenAi { json!({"include_usage": true}) } else { Value::Null },
            "messages": [
                {"role":"system","content":"Be brief."},
                {"role":"user","content":"Hi"},
                {"role":"assistant","content":"Hello!"},
                {"role":"user","content":"Tell me"}
            ]
        }),
        In::Claude => json!({
            "anthropic_version": "bedrock-2023-05-31", "model": model, "max_tokens": 100, "stream": stream,
            "system": "Be brief.",
            "messages": [
                {"role":"user","content":"Hi"},
                {"role":"assistant","content":[{"type":"text","text":"Hello!"}]},
                {"role":"user","content":[{"type":"text","text":"Tell me"}]}
            ]
        }),
        In::Titan => json!({
            "model": model, "stream": stream,
            "inputText": "Be brief.\n\nUser: Hi\nBot: Hello!\nUser: Tell me\nBot:",
            "textGenerationConfig": {"maxTokenCount": 100}
        }),
    }
}

fn path(out: Out) -> &'static str {
    match out {
        Out::OpenAi => "/v1/chat/completions",
        Out::Claude => "/v1/chat/completions?target_format=bedrock_claude",
        Out::Titan => "/v1/chat/completions?target_format=bedrock_titan",
    }
}

/// Removes `null` members (the OpenAI request above uses `stream_options: null` when not streaming).
fn strip_nulls(v: &mut Value) {
    if let Value::Object(o) = v {
        o.retain(|_, v| !v.is_null());
        o.values_mut().for_each(strip_nulls);
    }
}

/// The system prompt, the three turns, and the limit reached the upstream in its own format.
fn assert_upstream_got_the_conversation(
    up: Up,
    sent: &fake::Recorded,
    inbound: In,
    client_body: &Value,
    stream: bool,
    cell: &str,
) {
    let body = sent.json();
    match up {
        Up::OpenAi => {
            assert_eq!(body["messages"][0]["role"], "system", "{cell}");
            assert_eq!(body["messages"][0]["content"], "Be brief.", "{cell}");
            let roles: Vec<&str> = body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles, ["system", "user", "assistant", "user"], "{cell}");
            assert!(
                body.get("anthropic_version").is_none() && body.get("inputText").is_none(),
                "{cell}"
            );
            assert_eq!(body["model"], up.model(), "{cell}");
        }
        Up::Claude => {
            if inbound == In::Claude {
                // Native pass-through: exactly what the client wrote, minus routing-only keys.
                let mut expected = client_body.clone();
                let o = expected.as_object_mut().unwrap();
                o.remove("model");
                o.remove("stream");
                assert_eq!(body, expected, "{cell}");
            }
            assert_eq!(body["system"], "Be brief.", "{cell}");
            assert_eq!(body["messages"].as_array().unwrap().len(), 3, "{cell}");
            assert_eq!(body["max_tokens"], 100, "{cell}");
            let op = if stream {
                "/invoke-with-response-stream"
            } else {
                "/invoke"
            };
            assert!(sent.path.ends_with(op), "{cell}: {}", sent.path);
        }
        Up::Titan => {
            if inbound == In::Titan {
                let mut expected = client_body.clone();
                let o = expected.as_object_mut().unwrap();
                o.remove("model");
                o.remove("stream");
                assert_eq!(body, expected, "{cell}");
            }
            let text = body["inputText"].as_str().unwrap();
            assert!(text.starts_with("Be brief."), "{cell}: {text}");
            assert!(
                text.contains("User: Hi\nBot: Hello!\nUser: Tell me") && text.ends_with("Bot:"),
                "{cell}: {text}"
            );
            assert_eq!(body["textGenerationConfig"]["maxTokenCount"], 100, "{cell}");
        }
        Up::Converse => {
            assert_eq!(body["system"], json!([{"text":"Be brief."}]), "{cell}");
            let roles: Vec<&str> = body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles, ["user", "assistant", "user"], "{cell}");
            assert_eq!(body["inferenceConfig"]["maxTokens"], 100, "{cell}");
        }
    }
}

fn assert_complete(out: Out, res: &TestResponse, model: &str, cell: &str) {
    assert_eq!(res.status, 200, "{cell}: {}", res.text());
    let r = res.json();
    match out {
        Out::OpenAi => {
            assert_eq!(r["object"], "chat.completion", "{cell}");
            assert_eq!(r["choices"][0]["message"]["role"], "assistant", "{cell}");
            assert_eq!(
                r["choices"][0]["message"]["content"], "You said: Tell me",
                "{cell}"
            );
            assert_eq!(r["choices"][0]["finish_reason"], "stop", "{cell}");
            assert!(
                r["usage"]["completion_tokens"].as_u64().unwrap() > 0,
                "{cell}"
            );
            assert_eq!(
                r["usage"]["total_tokens"].as_u64(),
                Some(
                    r["usage"]["prompt_tokens"].as_u64().unwrap()
                        + r["usage"]["completion_tokens"].as_u64().unwrap()
                ),
                "{cell}"
            );
        }
        Out::Claude => {
            assert_eq!(r["type"], "message", "{cell}");
            assert_eq!(r["role"], "assistant", "{cell}");
            assert!(
                r["id"].as_str().unwrap().starts_with("msg_"),
                "{cell}: {}",
                r["id"]
            );
            assert!(r["model"].as_str().is_some(), "{cell}");
            assert_eq!(
                r["content"],
                json!([{"type":"text","text":"You said: Tell me"}]),
                "{cell}"
            );
            assert_eq!(r["stop_reason"], "end_turn", "{cell}");
            assert!(
                r.as_object().unwrap().contains_key("stop_sequence"),
                "{cell}"
            );
            assert!(
                r["usage"]["input_tokens"].is_u64()
                    && r["usage"]["output_tokens"].as_u64().unwrap() > 0,
                "{cell}"
            );
        }
        Out::Titan => {
            assert!(r["inputTextTokenCount"].is_u64(), "{cell}");
            assert_eq!(r["results"].as_array().unwrap().len(), 1, "{cell}");
            assert_eq!(r["results"][0]["outputText"], "You said: Tell me", "{cell}");
            assert_eq!(r["results"][0]["completionReason"], "FINISH", "{cell}");
            assert!(
                r["results"][0]["tokenCount"].as_u64().unwrap() > 0,
                "{cell}"
            );
        }
    }
    let _ = model;
}

/// Validates a Claude SSE event sequence strictly and returns (text, stop_reason, output_tokens).
pub fn check_claude_sse(res: &TestResponse, cell: &str) -> (String, String, u64, Vec<Value>) {
    let events = res.sse_events();
    assert!(!events.is_empty(), "{cell}");
    for (name, data) in &events {
        assert_eq!(
            name.as_deref(),
            data["type"].as_str(),
            "{cell}: event name matches type"
        );
    }
    let types: Vec<&str> = events
        .iter()
        .map(|(_, d)| d["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"message_start"), "{cell}: {types:?}");
    assert_eq!(types.last(), Some(&"message_stop"), "{cell}: {types:?}");
    assert_eq!(types[types.len() - 2], "message_delta", "{cell}: {types:?}");
    let mut open: Option<u64> = None;
    let mut next_index = 0u64;
    let (mut text, mut tools) = (String::new(), Vec::new());
    for (_, d) in &events {
        match d["type"].as_str().unwrap() {
            "message_start" => {
                assert_eq!(d["message"]["role"], "assistant", "{cell}");
                assert!(
                    d["message"]["content"].as_array().unwrap().is_empty(),
                    "{cell}"
                );
            }
            "content_block_start" => {
                assert!(open.is_none(), "{cell}: block opened inside a block");
                assert_eq!(
                    d["index"].as_u64(),
                    Some(next_index),
                    "{cell}: block indexes increase from 0"
                );
                open = Some(next_index);
                next_index += 1;
                if d["content_block"]["type"] == "tool_use" {
                    tools.push(json!({"id": d["content_block"]["id"], "name": d["content_block"]["name"], "input": ""}));
                }
            }
            "content_block_delta" => {
                assert_eq!(
                    d["index"].as_u64(),
                    open,
                    "{cell}: delta for the open block"
                );
                match d["delta"]["type"].as_str().unwrap() {
                    "text_delta" => text.push_str(d["delta"]["text"].as_str().unwrap()),
                    "input_json_delta" => {
                        let t = tools.last_mut().unwrap();
                        let s = format!(
                            "{}{}",
                            t["input"].as_str().unwrap(),
                            d["delta"]["partial_json"].as_str().unwrap()
                        );
                        t["input"] = Value::String(s);
                    }
                    "thinking_delta" | "signature_delta" => {}
                    other => panic!("{cell}: unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(d["index"].as_u64(), open, "{cell}");
                open = None;
            }
            "message_delta" => assert!(open.is_none(), "{cell}: message_delta with a block open"),
            "message_stop" | "ping" => {}
            other => panic!("{cell}: unexpected event {other}"),
        }
    }
    let delta = &events[events.len() - 2].1;
    let stop = delta["delta"]["stop_reason"].as_str().unwrap().to_owned();
    let out_tokens = delta["usage"]["output_tokens"].as_u64().unwrap();
    (text, stop, out_tokens, tools)
}

fn assert_stream(out: Out, res: &TestResponse, cell: &str) {
    assert_eq!(res.status, 200, "{cell}: {}", res.text());
    assert!(
        res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "{cell}"
    );
    match out {
        Out::OpenAi => {
            let data = res.sse_data();
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{cell}");
            let chunks: Vec<Value> = data[..data.len() - 1]
                .iter()
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            assert_eq!(
                chunks[0]["choices"][0]["delta"]["role"], "assistant",
                "{cell}"
            );
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
                .collect();
            assert_eq!(text, "You said: Tell me", "{cell}");
            assert!(
                chunks.iter().any(|c| c["choices"]
                    .get(0)
                    .is_some_and(|c| c["finish_reason"] == "stop")),
                "{cell}"
            );
            let usage = chunks.last().unwrap();
            assert_eq!(usage["choices"], json!([]), "{cell}");
            assert!(
                usage["usage"]["total_tokens"].as_u64().unwrap() > 0,
                "{cell}"
            );
        }
        Out::Claude => {
            let (text, stop, out_tokens, _) = check_claude_sse(res, cell);
            assert_eq!(text, "You said: Tell me", "{cell}");
            assert_eq!(stop, "end_turn", "{cell}");
            assert!(out_tokens > 0, "{cell}");
        }
        Out::Titan => {
            let data = res.sse_data();
            assert!(!data.iter().any(|d| d == "[DONE]"), "{cell}");
            let chunks: Vec<Value> = data
                .iter()
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            let text: String = chunks
                .iter()
                .filter_map(|c| c["outputText"].as_str())
                .collect();
            assert_eq!(text, "You said: Tell me", "{cell}");
            for (i, c) in chunks.iter().enumerate() {
                assert_eq!(c["index"].as_u64(), Some(i as u64), "{cell}");
                if i + 1 < chunks.len() {
                    assert!(c["completionReason"].is_null(), "{cell}");
                }
            }
            let last = chunks.last().unwrap();
            assert_eq!(last["completionReason"], "FINISH", "{cell}");
            assert!(
                last["totalOutputTextTokenCount"].as_u64().unwrap() > 0,
                "{cell}"
            );
            // The gateway's encoder reports the input count on the last chunk; Bedrock's own
            // stream (relayed to a Titan client of a Titan model) on the first.
            assert!(
                last["inputTextTokenCount"].is_u64() || chunks[0]["inputTextTokenCount"].is_u64(),
                "{cell}"
            );
        }
    }
}

#[tokio::test]
async fn every_cell_of_the_format_matrix() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    let mut cells = 0;
    for inbound in [In::OpenAi, In::Claude, In::Titan] {
        for out in [Out::OpenAi, Out::Claude, Out::Titan] {
            for up in [Up::OpenAi, Up::Claude, Up::Titan, Up::Converse] {
                for stream in [false, true] {
                    let cell = format!("{inbound:?} in → {out:?} out via {up:?}, stream={stream}");
                    let mut body = request(inbound, out, up.model(), stream);
                    strip_nulls(&mut body);
                    let before = upstream.count();
                    let res = post(&gw, path(out), &body).await;
                    if stream {
                        assert_stream(out, &res, &cell);
                    } else {
                        assert_complete(out, &res, up.model(), &cell);
                    }
                    let sent = upstream.requests();
                    assert_eq!(sent.len(), before + 1, "{cell}: one upstream call");
                    let last = sent.last().unwrap();
                    assert!(
                        !last.path.contains("target_format")
                            && !last.body.windows(13).any(|w| w == b"target_format"),
                        "{cell}: target_format never reaches an upstream"
                    );
                    assert_upstream_got_the_conversation(up, last, inbound, &body, stream, &cell);
                    cells += 1;
                }
            }
        }
    }
    assert_eq!(cells, 72);
}

#[tokio::test]
async fn tools_across_formats_that_have_them() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    for inbound in [In::OpenAi, In::Claude] {
        for out in [Out::OpenAi, Out::Claude] {
            for up in [Up::OpenAi, Up::Claude, Up::Converse] {
                for stream in [false, true] {
                    let cell =
                        format!("tools: {inbound:?} in → {out:?} out via {up:?}, stream={stream}");
                    let body = match inbound {
                        In::OpenAi => {
                            json!({"model": up.model(), "stream": stream, "messages":[{"role":"user","content":"Weather?"}],
                            "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]})
                        }
                        _ => {
                            json!({"anthropic_version":"bedrock-2023-05-31","model": up.model(),"max_tokens":100,"stream":stream,
                            "messages":[{"role":"user","content":"Weather?"}],
                            "tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
                            "tool_choice":{"type":"auto"}})
                        }
                    };
                    let res = post(&gw, path(out), &body).await;
                    assert_eq!(res.status, 200, "{cell}: {}", res.text());
                    let (name, input, reason) = match (out, stream) {
                        (Out::OpenAi, false) => {
                            let r = res.json();
                            let c = &r["choices"][0]["message"]["tool_calls"][0];
                            (
                                c["function"]["name"].clone(),
                                serde_json::from_str::<Value>(
                                    c["function"]["arguments"].as_str().unwrap(),
                                )
                                .unwrap(),
                                r["choices"][0]["finish_reason"].clone(),
                            )
                        }
                        (Out::OpenAi, true) => {
                            let data = res.sse_data();
                            let chunks: Vec<Value> = data
                                .iter()
                                .filter(|d| *d != "[DONE]")
                                .map(|d| serde_json::from_str(d).unwrap())
                                .collect();
                            let frags: Vec<&Value> = chunks
                                .iter()
                                .filter_map(|c| c["choices"].get(0)?["delta"].get("tool_calls"))
                                .collect();
                            let args: String = frags
                                .iter()
                                .filter_map(|f| f[0]["function"]["arguments"].as_str())
                                .collect();
                            let reason = chunks
                                .iter()
                                .filter_map(|c| c["choices"].get(0))
                                .map(|c| c["finish_reason"].clone())
                                .find(|f| !f.is_null())
                                .unwrap();
                            (
                                frags[0][0]["function"]["name"].clone(),
                                serde_json::from_str(&args).unwrap(),
                                reason,
                            )
                        }
                        (Out::Claude, false) => {
                            let r = res.json();
                            let block = r["content"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .find(|b| b["type"] == "tool_use")
                                .cloned()
                                .unwrap();
                            (
                                block["name"].clone(),
                                block["input"].clone(),
                                json!(if r["stop_reason"] == "tool_use" {
                                    "tool_calls"
                                } else {
                                    "other"
                                }),
                            )
                        }
                        (Out::Claude, true) => {
                            let (_, stop, _, tools) = check_claude_sse(&res, &cell);
                            let input: Value =
                                serde_json::from_str(tools[0]["input"].as_str().unwrap()).unwrap();
                            (
                                tools[0]["name"].clone(),
                                input,
                                json!(if stop == "tool_use" {
                                    "tool_calls"
                                } else {
                                    "other"
                                }),
                            )
                        }
                        _ => unreachable!(),
                    };
                    assert_eq!(name, "get_weather", "{cell}");
                    assert_eq!(input, json!({"city":"Paris"}), "{cell}");
                    assert_eq!(reason, "tool_calls", "{cell}");
                    let sent = upstream.requests().last().unwrap().json();
                    match up {
                        Up::OpenAi => assert_eq!(
                            sent["tools"][0]["function"]["name"], "get_weather",
                            "{cell}"
                        ),
                        Up::Claude => assert_eq!(sent["tools"][0]["name"], "get_weather", "{cell}"),
                        Up::Converse => assert_eq!(
                            sent["toolConfig"]["tools"][0]["toolSpec"]["name"], "get_weather",
                            "{cell}"
                        ),
                        Up::Titan => unreachable!(),
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn bedrock_format_shape_errors() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    // A Claude body without a model: 400 naming `model`, in the Anthropic shape when asked for.
    let res = post(&gw, "/v1/chat/completions?target_format=bedrock_claude",
        &json!({"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(res.status, 400);
    let e = res.json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let res = post(&gw, "/v1/chat/completions", &json!({"inputText":"hi"})).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["param"], "model");
    // model_id / modelId spellings.
    for key in ["model_id", "modelId"] {
        let mut body = json!({"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":"x"}]});
        body[key] = json!("anthropic.claude-3-haiku-20240307-v1:0");
        let res = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(res.status, 200, "{key}: {}", res.text());
        let sent = upstream.requests().last().unwrap().json();
        assert!(sent.get(key).is_none(), "routing-only key {key} removed");
    }
    // Unknown model in Claude format → 404 in the Anthropic shape, no upstream call.
    let before = upstream.count();
    let res = post(&gw, "/v1/chat/completions?target_format=bedrock_claude",
        &json!({"anthropic_version":"bedrock-2023-05-31","model":"nope","max_tokens":10,"messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(res.status, 404);
    assert_eq!(res.json()["error"]["type"], "not_found_error");
    assert_eq!(upstream.count(), before);
}
