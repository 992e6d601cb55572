//! The mock provider: `mock/…` models answered in-process, so the gateway can be tried (and its
//! formats, streaming, tools and usage seen) on a machine with no upstream and no credentials.
//!
//! Off unless enabled (`--mock`, `MOCK_PROVIDER=true`, or `[mock] enabled = true`). Every answer is
//! a pure function of the request — the same request always gets the same reply:
//!
//! - the last message is the user's and the request has tools (and `tool_choice` is not `none`):
//!   one call of the forced tool (else the first), with arguments filled from its JSON schema
//!   (strings `"example"` or the first `enum` value, numbers `1`, booleans `true`);
//!   `finish_reason: "tool_calls"`;
//! - the last message is a tool result: `Tool <name> returned: <content>`;
//! - otherwise: `You said: <the last user text>`.
//!
//! Embeddings (`Service<EmbeddingsCall>`, [`mock_embeddings`]) are unit vectors that depend only
//! on each text (8 floats unless the request gives `dimensions`).
//!
//! As a `Service<ChatCall>` it is always ready and answers the request's own model id (it ignores
//! the route, so it also answers a call that was never routed).
//!
//! `max_tokens`/`max_completion_tokens` cut the reply to that many words (`finish_reason:
//! "length"`), a stop sequence cuts it before the sequence. Usage counts one token per four
//! characters of the prompt (plus one per message) and one per word of the reply. Streams send a
//! role chunk, one chunk per word (tool arguments in two pieces), the finish chunk and the usage.
//!
//! ```
//! use open_bedrock_server::model::{ChatRequest, Message, Role};
//! use open_bedrock_server::provider::mock::mock_response;
//!
//! let mut req = ChatRequest::default();
//! req.model = "mock/echo".into();
//! req.messages = vec![Message::text(Role::User, "Hello there!")];
//! let reply = mock_response(&req);
//! assert_eq!(reply.choices[0].message.content.as_deref(), Some("You said: Hello there!"));
//! assert_eq!(reply.usage.unwrap().completion_tokens, 4);
//! ```

use std::task::{Context, Poll};

use serde_json::{Map, Value};
use tower_service::Service;

use crate::error::GatewayError;
use crate::model::{
    finish_reason, ChatCall, ChatChunk, ChatReply, ChatRequest, ChatResponse, ChunkMeta,
    ChunkStream, Delta, EmbeddingsCall, EmbeddingsRequest, EmbeddingsResponse, Message,
    ResponseMessage, Role, ToolCall, ToolCallDelta, ToolChoiceKind, Usage,
};

/// The model-id prefix the mock provider serves.
pub const MOCK_PREFIX: &str = "mock/";

/// The model the mock provider lists in `/v1/models` (any `mock/…` id is answered).
pub const MOCK_LISTED_MODEL: &str = "mock/echo";

/// The in-process mock provider. Cheap to clone (no state).
#[derive(Debug, Clone, Copy, Default)]
pub struct MockProvider;

/// What the mock model "decided" to answer.
enum Answer {
    Text {
        words: Vec<String>,
        finish: &'static str,
    },
    Tool {
        call: ToolCall,
    },
}

impl MockProvider {
    /// A mock provider.
    pub fn new() -> Self {
        MockProvider
    }

    /// Answers `request` at once: a complete reply, or a stream of its chunks.
    pub fn answer(&self, request: &ChatRequest) -> Result<ChatReply, GatewayError> {
        if request.is_stream() {
            Ok(ChatReply::Stream(ChunkStream::from_chunks(
                mock_chunks(request).into_iter().map(Ok).collect(),
            )))
        } else {
            Ok(ChatReply::Complete(mock_response(request)))
        }
    }
}

impl Service<ChatCall> for MockProvider {
    type Response = ChatReply;
    type Error = GatewayError;
    type Future = std::future::Ready<Result<ChatReply, GatewayError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ChatCall) -> Self::Future {
        std::future::ready(
            call.context
                .check_translatable()
                .and_then(|()| self.answer(&call.request)),
        )
    }
}

/// The size of a mock vector when the request gives no `dimensions`.
pub const MOCK_EMBEDDING_DIMENSIONS: u32 = 8;

/// Embeddings for `request`: for each input, a unit vector of `dimensions` (default
/// [`MOCK_EMBEDDING_DIMENSIONS`]) floats that depends only on the text, so equal texts get equal
/// vectors; usage counts one token per four characters of each input.
pub fn mock_embeddings(request: &EmbeddingsRequest) -> EmbeddingsResponse {
    let dims = request
        .dimensions
        .unwrap_or(MOCK_EMBEDDING_DIMENSIONS)
        .min(4096) as usize;
    let mut tokens = 0u64;
    let vectors = request
        .texts()
        .iter()
        .map(|text| {
            tokens += (text.len() as u64).div_ceil(4).max(1);
            // FNV-1a over the text seeds a small xorshift generator per vector.
            let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            }) | 1;
            let raw: Vec<f32> = (0..dims)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 2001) as f32 / 1000.0 - 1.0
                })
                .collect();
            let norm = raw
                .iter()
                .map(|v| v * v)
                .sum::<f32>()
                .sqrt()
                .max(f32::EPSILON);
            raw.into_iter().map(|v| v / norm).collect()
        })
        .collect();
    EmbeddingsResponse::new(&request.model, vectors, tokens)
}

impl Service<EmbeddingsCall> for MockProvider {
    type Response = EmbeddingsResponse;
    type Error = GatewayError;
    type Future = std::future::Ready<Result<EmbeddingsResponse, GatewayError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: EmbeddingsCall) -> Self::Future {
        std::future::ready(Ok(mock_embeddings(&call.request)))
    }
}

/// The text of a message's content (text parts joined; other parts ignored).
fn text_of(message: &Message) -> String {
    message.text_content()
}

fn decide(request: &ChatRequest) -> Answer {
    let last = request.messages.last();
    let tools = request.tools.as_deref().unwrap_or_default();
    let choice = request.tool_choice.as_ref().and_then(|c| c.kind());
    if last.is_some_and(|m| m.role == Role::User)
        && !tools.is_empty()
        && choice != Some(ToolChoiceKind::None)
    {
        let forced = match choice {
            Some(ToolChoiceKind::Function(name)) => tools
                .iter()
                .filter_map(|t| t.function.as_ref())
                .find(|f| f.name == name),
            _ => None,
        };
        if let Some(function) = forced.or_else(|| tools.iter().find_map(|t| t.function.as_ref())) {
            let args = example_value(function.parameters.as_ref());
            let call = ToolCall::function(
                format!("call_mock_{}", function.name),
                function.name.clone(),
                args.to_string(),
            );
            return Answer::Tool { call };
        }
    }
    let text = match last {
        Some(m) if m.role == Role::Tool => {
            let name = m
                .tool_call_id
                .as_deref()
                .and_then(|id| {
                    request
                        .messages
                        .iter()
                        .flat_map(|m| m.tool_calls.iter().flatten())
                        .find(|c| c.id == id)
                })
                .map(|c| c.function.name.clone())
                .unwrap_or_else(|| "tool".into());
            format!("Tool {name} returned: {}", text_of(m))
        }
        _ => {
            let said = request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(text_of)
                .unwrap_or_default();
            format!("You said: {said}")
        }
    };
    let mut finish = finish_reason::STOP;
    let text = match request
        .stop_sequences()
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s))
        .min()
    {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let mut words: Vec<String> = split_words(&text);
    if let Some(limit) = request.max_output_tokens() {
        if words.len() > limit as usize {
            words.truncate(limit as usize);
            finish = finish_reason::LENGTH;
        }
    }
    Answer::Text { words, finish }
}

/// Splits text into words that keep their leading space, so joining them gives the text back.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if ch == ' ' && !current.trim().is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.push(ch);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// A value that satisfies a (simple) JSON schema: the first `enum` value, else by `type`.
fn example_value(schema: Option<&Value>) -> Value {
    let Some(schema) = schema.and_then(Value::as_object) else {
        return Value::Object(Map::new());
    };
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.contains_key("properties") => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            let props = schema.get("properties").and_then(Value::as_object);
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (name, prop) in props.into_iter().flatten() {
                if required.is_empty() || required.contains(&name.as_str()) {
                    out.insert(name.clone(), example_value(Some(prop)));
                }
            }
            Value::Object(out)
        }
        "array" => Value::Array(Vec::new()),
        "integer" | "number" => Value::from(1),
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => Value::from("example"),
    }
}

fn usage(request: &ChatRequest, completion: u64) -> Usage {
    let chars: usize = request
        .messages
        .iter()
        .map(|m| text_of(m).chars().count())
        .sum();
    let prompt = (chars as u64).div_ceil(4) + request.messages.len() as u64;
    Usage::from_parts(prompt, completion, 0, 0)
}

fn tool_tokens(call: &ToolCall) -> u64 {
    (call.function.arguments.len() as u64).div_ceil(4).max(1)
}

/// The complete reply the mock model gives to `request`.
pub fn mock_response(request: &ChatRequest) -> ChatResponse {
    let meta = ChunkMeta::new(request.model.clone());
    match decide(request) {
        Answer::Text { words, finish } => {
            let completion = words.len() as u64;
            let message = ResponseMessage::assistant(Some(words.concat()), None);
            ChatResponse::new(&meta, message, finish, Some(usage(request, completion)))
        }
        Answer::Tool { call } => {
            let completion = tool_tokens(&call);
            let message = ResponseMessage::assistant(None, Some(vec![call]));
            ChatResponse::new(
                &meta,
                message,
                finish_reason::TOOL_CALLS,
                Some(usage(request, completion)),
            )
        }
    }
}

/// The stream of chunks the mock model sends for `request` (always ending with a usage chunk).
pub fn mock_chunks(request: &ChatRequest) -> Vec<ChatChunk> {
    let meta = ChunkMeta::new(request.model.clone());
    let mut out = vec![ChatChunk::delta(&meta, Delta::role(), None)];
    let (finish, completion) = match decide(request) {
        Answer::Text { words, finish } => {
            let n = words.len() as u64;
            out.extend(
                words
                    .into_iter()
                    .map(|w| ChatChunk::delta(&meta, Delta::text(w), None)),
            );
            (finish, n)
        }
        Answer::Tool { call } => {
            let n = tool_tokens(&call);
            let args = &call.function.arguments;
            let mid = args.len() / 2;
            let mid = (mid..=args.len())
                .find(|i| args.is_char_boundary(*i))
                .unwrap_or(args.len());
            out.push(ChatChunk::delta(
                &meta,
                Delta::tool_call(ToolCallDelta::start(0, &call.id, &call.function.name)),
                None,
            ));
            for piece in [&args[..mid], &args[mid..]] {
                if !piece.is_empty() {
                    out.push(ChatChunk::delta(
                        &meta,
                        Delta::tool_call(ToolCallDelta::arguments(0, piece)),
                        None,
                    ));
                }
            }
            (finish_reason::TOOL_CALLS, n)
        }
    };
    out.push(ChatChunk::delta(&meta, Delta::default(), Some(finish)));
    out.push(ChatChunk::usage(&meta, usage(request, completion)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tool;
    use serde_json::json;

    fn request(body: Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn echoes_and_counts() {
        let req = request(json!({"model":"mock/echo","messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":"Hello!"}]}));
        let r = mock_response(&req);
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("You said: Hello!")
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
        let u = r.usage.clone().unwrap();
        // 9 + 6 characters → 4 tokens, plus one per message.
        assert_eq!((u.prompt_tokens, u.completion_tokens), (6, 3));
        // Deterministic: the same request gets the same reply (ids and timestamps aside).
        let mut again = mock_response(&req);
        again.id = r.id.clone();
        again.created = r.created;
        assert_eq!(again, r);
    }

    #[test]
    fn limits_and_stops() {
        let req = request(json!({"model":"mock/x","max_tokens":2,
            "messages":[{"role":"user","content":"one two three"}]}));
        let r = mock_response(&req);
        assert_eq!(r.choices[0].message.content.as_deref(), Some("You said:"));
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
        let req = request(json!({"model":"mock/x","stop":["three"],
            "messages":[{"role":"user","content":"one two three"}]}));
        let r = mock_response(&req);
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("You said: one two ")
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn calls_tools_and_reads_their_results() {
        let mut req = request(
            json!({"model":"mock/x","messages":[{"role":"user","content":"Weather in Paris?"}]}),
        );
        req.tools = Some(vec![
            Tool::function(
                "get_time",
                None,
                Some(json!({"type":"object","properties":{}})),
            ),
            Tool::function(
                "get_weather",
                None,
                Some(json!({"type":"object","properties":{
                    "city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]},
                    "days":{"type":"integer"}},"required":["city","unit"]})),
            ),
        ]);
        req.tool_choice = Some(crate::model::ToolChoice::Object(
            json!({"type":"function","function":{"name":"get_weather"}}),
        ));
        let r = mock_response(&req);
        let call = &r.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "get_weather");
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(args, json!({"city":"example","unit":"c"}));
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));

        // The streamed arguments add up to the same call.
        req.stream = Some(true);
        let chunks = mock_chunks(&req);
        let streamed: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .filter_map(|t| t.function.as_ref()?.arguments.clone())
            .collect();
        assert_eq!(streamed, call.function.arguments);
        assert!(chunks.last().unwrap().is_usage_only());

        // A tool result is read back.
        req.messages.push(Message {
            role: Role::Assistant,
            content: None,
            name: None,
            tool_calls: Some(vec![call.clone()]),
            tool_call_id: None,
            cache_control: None,
            thinking_blocks: None,
            extra: Map::new(),
        });
        let mut result = Message::text(Role::Tool, "18 degrees");
        result.tool_call_id = Some(call.id.clone());
        req.messages.push(result);
        let r = mock_response(&req);
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("Tool get_weather returned: 18 degrees")
        );
    }

    #[test]
    fn stream_text_adds_up() {
        let req = request(json!({"model":"mock/x","stream":true,
            "messages":[{"role":"user","content":"a b c"}]}));
        let chunks = mock_chunks(&req);
        let text: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "You said: a b c");
        assert_eq!(chunks.len(), 1 + 5 + 1 + 1);
    }
}
