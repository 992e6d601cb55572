//! The canonical reply → a Response object, and canonical chunks → the typed Responses stream
//! events (each with its `sequence_number`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{ErrorDialect, GatewayError};
use crate::model::{ChatChunk, ChatResponse, Usage};
use crate::sse::SseFramer;
use crate::stream::{EventEncoder, Framer, WireEvent};

/// What every Response object of one request carries besides its output: its id, the time, the
/// model and the request's echoed settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResponseMeta {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model as requested.
    pub model: String,
    /// `previous_response_id`, echoed.
    pub previous_response_id: Option<String>,
    /// `store`, echoed.
    pub store: bool,
    /// The request's settings the object echoes (`instructions`, `tools`, `metadata`, …).
    pub echo: Map<String, Value>,
}

/// A fresh response id: `resp_` and 32 hex digits.
pub fn response_id() -> String {
    format!("resp_{:032x}", rand::random::<u128>())
}

fn item_id(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

impl ResponseMeta {
    /// The meta of a response to `model` with the request's `echo`.
    pub fn new(model: impl Into<String>, echo: Map<String, Value>) -> Self {
        ResponseMeta {
            id: response_id(),
            created_at: crate::model::unix_now(),
            model: model.into(),
            previous_response_id: None,
            store: true,
            echo,
        }
    }

    /// The Response object with `status`, `output` and `usage`.
    pub fn object(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Option<&Usage>,
        finish: Option<&str>,
    ) -> Value {
        let echo = |k: &str, default: Value| self.echo.get(k).cloned().unwrap_or(default);
        let incomplete = match (status, finish) {
            ("incomplete", Some("content_filter")) => json!({"reason": "content_filter"}),
            ("incomplete", _) => json!({"reason": "max_output_tokens"}),
            _ => Value::Null,
        };
        let mut text = echo("text", json!({"format": {"type": "text"}}));
        if text.get("format").is_none() {
            text["format"] = json!({"type": "text"});
        }
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": incomplete,
            "instructions": echo("instructions", Value::Null),
            "max_output_tokens": echo("max_output_tokens", Value::Null),
            "metadata": echo("metadata", json!({})),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": echo("parallel_tool_calls", Value::Bool(true)),
            "previous_response_id": self.previous_response_id,
            "reasoning": echo("reasoning", json!({"effort": null, "summary": null})),
            "service_tier": echo("service_tier", Value::from("default")),
            "store": self.store,
            "temperature": echo("temperature", Value::from(1.0)),
            "text": text,
            "tool_choice": echo("tool_choice", Value::from("auto")),
            "tools": echo("tools", json!([])),
            "top_p": echo("top_p", Value::from(1.0)),
            "truncation": echo("truncation", Value::from("disabled")),
            "usage": usage.map(usage_object),
            "user": echo("user", Value::Null),
        })
    }
}

/// Chat usage → Responses usage (`input_tokens_details.cached_tokens`,
/// `output_tokens_details.reasoning_tokens`).
pub fn usage_object(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens()},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens().unwrap_or(0)},
        "total_tokens": usage.total_tokens,
    })
}

fn status_of(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length" | "content_filter") => "incomplete",
        _ => "completed",
    }
}

fn message_item(id: &str, status: &str, text: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

fn function_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status})
}

/// A complete chat reply as a Response object, and the assistant turn (a chat message) to keep
/// for a follow-up.
pub fn encode_client_response(meta: &ResponseMeta, response: &ChatResponse) -> (Value, Value) {
    let choice = response.choices.first();
    let message = choice.map(|c| &c.message);
    let finish = choice.and_then(|c| c.finish_reason.as_deref());
    let mut output = Vec::new();
    if let Some(r) = message
        .and_then(|m| m.reasoning_content.as_deref())
        .filter(|r| !r.is_empty())
    {
        output.push(reasoning_item(&item_id("rs"), r));
    }
    if let Some(refusal) = message.and_then(|m| m.refusal.as_deref()) {
        output.push(
            json!({"type": "message", "id": item_id("msg"), "status": "completed",
            "role": "assistant", "content": [{"type": "refusal", "refusal": refusal}]}),
        );
    }
    let text = message
        .and_then(|m| m.content.as_deref())
        .unwrap_or_default();
    if !text.is_empty() {
        output.push(message_item(&item_id("msg"), "completed", text));
    }
    let calls = message
        .and_then(|m| m.tool_calls.as_deref())
        .unwrap_or_default();
    for call in calls {
        output.push(function_item(
            &item_id("fc"),
            "completed",
            &call.id,
            &call.function.name,
            &call.function.arguments,
        ));
    }
    let object = meta.object(status_of(finish), output, response.usage.as_ref(), finish);
    (
        object,
        assistant_turn(
            text,
            calls.iter().map(|c| {
                (
                    c.id.as_str(),
                    c.function.name.as_str(),
                    c.function.arguments.as_str(),
                )
            }),
        ),
    )
}

fn assistant_turn<'a>(
    text: &str,
    calls: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> Value {
    let calls: Vec<Value> = calls
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    let mut turn = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::from(text) }});
    if !calls.is_empty() {
        turn["tool_calls"] = Value::Array(calls);
    }
    turn
}

/// One typed Responses stream event: its `type` and its members (with `sequence_number`).
#[derive(Debug)]
pub struct ResponsesEvent {
    kind: &'static str,
    body: Value,
}

impl Serialize for ResponsesEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.body.serialize(serializer)
    }
}

impl WireEvent for ResponsesEvent {
    fn name(&self) -> Option<&'static str> {
        Some(self.kind)
    }
}

/// Called once with the final Response object and the assistant turn when a stream completes.
pub type OnComplete = Box<dyn FnOnce(&Value, Value) + Send>;

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Text {
        id: String,
        text: String,
    },
    Reasoning {
        id: String,
        text: String,
    },
    Call {
        id: String,
        index: u32,
        call_id: String,
        name: String,
        args: String,
    },
}

/// Canonical chunks → `response.created`, `response.in_progress`, `response.output_item.added`,
/// `response.content_part.added`, `response.output_text.delta`/`.done`,
/// `response.function_call_arguments.delta`/`.done`, `response.reasoning_summary_text.*`,
/// `response.content_part.done`, `response.output_item.done` and `response.completed` (or
/// `response.incomplete`), numbered by `sequence_number`. Tool calls are streamed one after the
/// other, as every upstream decoder yields them.
pub struct ResponsesStreamEncoder {
    meta: ResponseMeta,
    seq: Arc<AtomicU64>,
    started: bool,
    output: Vec<Value>,
    open: Option<Open>,
    text: String,
    calls: Vec<(String, String, String)>,
    usage: Option<Usage>,
    finish: Option<String>,
    on_complete: Option<OnComplete>,
}

impl std::fmt::Debug for ResponsesStreamEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponsesStreamEncoder")
            .field("id", &self.meta.id)
            .finish_non_exhaustive()
    }
}

impl ResponsesStreamEncoder {
    /// An encoder for the response `meta` describes, numbering its events from `seq` (shared with
    /// its [`ResponsesFramer`], so an in-band error continues the numbering).
    pub fn new(meta: ResponseMeta, seq: Arc<AtomicU64>) -> Self {
        ResponsesStreamEncoder {
            meta,
            seq,
            started: false,
            output: Vec::new(),
            open: None,
            text: String::new(),
            calls: Vec::new(),
            usage: None,
            finish: None,
            on_complete: None,
        }
    }

    /// Calls `hook` with the final Response object and the assistant turn once the stream
    /// completes (not when it fails).
    pub fn on_complete(mut self, hook: OnComplete) -> Self {
        self.on_complete = Some(hook);
        self
    }

    fn emit<F: Framer>(&self, out: &mut F, kind: &'static str, mut body: Value) {
        body["type"] = Value::from(kind);
        body["sequence_number"] = Value::from(self.seq.fetch_add(1, Ordering::Relaxed));
        out.event(&ResponsesEvent { kind, body });
    }

    fn start<F: Framer>(&mut self, out: &mut F) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.meta.object("in_progress", Vec::new(), None, None);
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    fn close<F: Framer>(&mut self, out: &mut F) {
        let Some(open) = self.open.take() else {
            return;
        };
        let output_index = self.index();
        let item = match open {
            Open::Text { id, text } => {
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.emit(out, "response.output_text.done", json!({"item_id": id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}));
                self.emit(out, "response.content_part.done", json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": part}));
                message_item(&id, "completed", &text)
            }
            Open::Reasoning { id, text } => {
                let part = json!({"type": "summary_text", "text": text});
                self.emit(out, "response.reasoning_summary_text.done", json!({"item_id": id, "output_index": output_index, "summary_index": 0, "text": text}));
                self.emit(out, "response.reasoning_summary_part.done", json!({"item_id": id, "output_index": output_index, "summary_index": 0, "part": part}));
                reasoning_item(&id, &text)
            }
            Open::Call {
                id,
                call_id,
                name,
                args,
                ..
            } => {
                self.emit(out, "response.function_call_arguments.done", json!({"item_id": id, "output_index": output_index, "name": name, "arguments": args}));
                self.calls
                    .push((call_id.clone(), name.clone(), args.clone()));
                function_item(&id, "completed", &call_id, &name, &args)
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        );
        self.output.push(item);
    }

    fn text_delta<F: Framer>(&mut self, out: &mut F, delta: &str) {
        if !matches!(self.open, Some(Open::Text { .. })) {
            self.close(out);
            let id = item_id("msg");
            let output_index = self.index();
            self.emit(out, "response.output_item.added", json!({"output_index": output_index, "item": {"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}}));
            self.emit(out, "response.content_part.added", json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}));
            self.open = Some(Open::Text {
                id,
                text: String::new(),
            });
        }
        let output_index = self.index();
        if let Some(Open::Text { id, text }) = &mut self.open {
            text.push_str(delta);
            self.text.push_str(delta);
            let id = id.clone();
            self.emit(out, "response.output_text.delta", json!({"item_id": id, "output_index": output_index, "content_index": 0, "delta": delta, "logprobs": []}));
        }
    }

    fn reasoning_delta<F: Framer>(&mut self, out: &mut F, delta: &str) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(out);
            let id = item_id("rs");
            let output_index = self.index();
            self.emit(out, "response.output_item.added", json!({"output_index": output_index, "item": {"type": "reasoning", "id": id, "summary": []}}));
            self.emit(out, "response.reasoning_summary_part.added", json!({"item_id": id, "output_index": output_index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}));
            self.open = Some(Open::Reasoning {
                id,
                text: String::new(),
            });
        }
        let output_index = self.index();
        if let Some(Open::Reasoning { id, text }) = &mut self.open {
            text.push_str(delta);
            let id = id.clone();
            self.emit(out, "response.reasoning_summary_text.delta", json!({"item_id": id, "output_index": output_index, "summary_index": 0, "delta": delta}));
        }
    }

    fn call_delta<F: Framer>(
        &mut self,
        out: &mut F,
        index: u32,
        call_id: Option<&str>,
        name: Option<&str>,
        args: &str,
    ) {
        let same = matches!(&self.open, Some(Open::Call { index: i, .. }) if *i == index);
        if !same {
            self.close(out);
            let id = item_id("fc");
            let call_id = call_id.unwrap_or_default().to_owned();
            let name = name.unwrap_or_default().to_owned();
            let output_index = self.index();
            self.emit(out, "response.output_item.added", json!({"output_index": output_index, "item": function_item(&id, "in_progress", &call_id, &name, "")}));
            self.open = Some(Open::Call {
                id,
                index,
                call_id,
                name,
                args: String::new(),
            });
        }
        if args.is_empty() {
            return;
        }
        let output_index = self.index();
        if let Some(Open::Call { id, args: all, .. }) = &mut self.open {
            all.push_str(args);
            let id = id.clone();
            self.emit(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": output_index, "delta": args}),
            );
        }
    }
}

impl EventEncoder for ResponsesStreamEncoder {
    fn encode<F: Framer>(&mut self, chunk: &ChatChunk, out: &mut F) {
        self.start(out);
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.choices.first() else {
            return;
        };
        let delta = &choice.delta;
        if let Some(r) = delta.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
            self.reasoning_delta(out, r);
        }
        if let Some(t) = delta.content.as_deref().filter(|t| !t.is_empty()) {
            self.text_delta(out, t);
        }
        if let Some(t) = delta.refusal.as_deref().filter(|t| !t.is_empty()) {
            self.text_delta(out, t);
        }
        for call in delta.tool_calls.iter().flatten() {
            let f = call.function.as_ref();
            self.call_delta(
                out,
                call.index,
                call.id.as_deref(),
                f.and_then(|f| f.name.as_deref()),
                f.and_then(|f| f.arguments.as_deref()).unwrap_or_default(),
            );
        }
        if let Some(reason) = &choice.finish_reason {
            self.finish = Some(reason.clone());
        }
    }

    fn finish<F: Framer>(&mut self, out: &mut F) {
        self.start(out);
        self.close(out);
        let finish = self.finish.as_deref();
        let status = status_of(finish);
        let response = self.meta.object(
            status,
            std::mem::take(&mut self.output),
            self.usage.as_ref(),
            finish,
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({"response": response}));
        if let Some(hook) = self.on_complete.take() {
            let turn = assistant_turn(
                &self.text,
                self.calls
                    .iter()
                    .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())),
            );
            hook(&response, turn);
        }
    }
}

/// SSE for Responses streams: named events, and an in-band failure as an `error` event
/// (`{"type":"error","code","message","param","sequence_number"}`) numbered after the events
/// before it.
#[derive(Debug)]
pub struct ResponsesFramer {
    sse: SseFramer,
    seq: Arc<AtomicU64>,
}

impl ResponsesFramer {
    /// A framer numbering its error event from `seq` (shared with the encoder).
    pub fn new(seq: Arc<AtomicU64>) -> Self {
        ResponsesFramer {
            sse: SseFramer::new(ErrorDialect::OpenAi),
            seq,
        }
    }
}

impl Framer for ResponsesFramer {
    fn event<E: WireEvent + ?Sized>(&mut self, event: &E) {
        self.sse.event(event);
    }

    fn error(&mut self, error: &GatewayError) {
        let body = error.to_body_json(ErrorDialect::OpenAi);
        let e = &body["error"];
        self.sse.event(&ResponsesEvent {
            kind: "error",
            body: json!({"type": "error", "code": e["code"].as_str().or(e["type"].as_str()),
                "message": e["message"], "param": e["param"],
                "sequence_number": self.seq.fetch_add(1, Ordering::Relaxed)}),
        });
    }

    fn keep_alive(&self) -> Option<Bytes> {
        self.sse.keep_alive()
    }

    fn content_type(&self) -> &'static str {
        self.sse.content_type()
    }

    fn take(&mut self) -> Bytes {
        self.sse.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, Delta, ToolCallDelta};
    use crate::stream::testing::Recorder;

    #[test]
    fn a_stream_is_the_typed_event_sequence_numbered_in_order() {
        let seq = Arc::new(AtomicU64::new(0));
        let stored = Arc::new(std::sync::Mutex::new(None));
        let keep = stored.clone();
        let mut enc = ResponsesStreamEncoder::new(ResponseMeta::new("m", Map::new()), seq)
            .on_complete(Box::new(move |r, turn| {
                *keep.lock().unwrap() = Some((r.clone(), turn))
            }));
        let meta = ChunkMeta::new("m");
        let mut out = Recorder::default();
        enc.encode(&ChatChunk::delta(&meta, Delta::text("Hel"), None), &mut out);
        enc.encode(&ChatChunk::delta(&meta, Delta::text("lo"), None), &mut out);
        let d = Delta {
            tool_calls: Some(vec![ToolCallDelta::start(0, "call_1", "f")]),
            ..Delta::default()
        };
        enc.encode(&ChatChunk::delta(&meta, d, None), &mut out);
        enc.encode(
            &ChatChunk::delta(&meta, Delta::default(), Some("tool_calls")),
            &mut out,
        );
        enc.encode(
            &ChatChunk::usage(&meta, Usage::from_parts(3, 4, 0, 0)),
            &mut out,
        );
        enc.finish(&mut out);
        let kinds: Vec<&str> = out.events.iter().map(|(k, _)| k.unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (_, e)) in out.events.iter().enumerate() {
            assert_eq!(e["sequence_number"], i, "{e}");
        }
        let done = &out.events.last().unwrap().1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["call_id"], "call_1");
        assert_eq!(done["usage"]["total_tokens"], 7);
        let (stored, turn) = stored.lock().unwrap().clone().unwrap();
        assert_eq!(stored, *done);
        assert_eq!(turn["content"], "Hello");
        assert_eq!(turn["tool_calls"][0]["id"], "call_1");
    }
}
