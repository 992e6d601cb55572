//! The canonical reply: OpenAI `chat.completion`, `chat.completion.chunk` and usage objects.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::request::{Role, ThinkingBlock, ToolCall};

/// A complete (non-streamed) chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatResponse {
    /// `chatcmpl-…`, stable for the whole reply.
    pub id: String,
    /// Always `chat.completion`.
    #[serde(default = "completion_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model as the client requested it.
    #[serde(default)]
    pub model: String,
    /// The choices (one for Bedrock).
    pub choices: Vec<Choice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Other members (`system_fingerprint`, `service_tier`, …), kept as the upstream wrote them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatResponse {
    /// A one-choice completion with the stream-style metadata of `meta` (for providers written
    /// outside the crate, and for tests).
    pub fn new(
        meta: &ChunkMeta,
        message: ResponseMessage,
        finish_reason: &str,
        usage: Option<Usage>,
    ) -> Self {
        ChatResponse::with_choices(
            meta,
            vec![Choice::new(0, message, Some(finish_reason))],
            usage,
        )
    }

    /// A completion with `choices` (for `n > 1`) and the metadata of `meta`.
    pub fn with_choices(meta: &ChunkMeta, choices: Vec<Choice>, usage: Option<Usage>) -> Self {
        ChatResponse {
            id: meta.id.clone(),
            object: completion_object(),
            created: meta.created,
            model: meta.model.clone(),
            choices,
            usage,
            extra: Map::new(),
        }
    }
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

/// One choice of a complete reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Choice {
    /// Position of the choice.
    #[serde(default)]
    pub index: u32,
    /// The assistant message.
    pub message: ResponseMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`, `function_call`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Log probabilities (always `null` from Bedrock).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Choice {
    /// Choice `index` answering `message`, ended by `finish_reason`.
    pub fn new(index: u32, message: ResponseMessage, finish_reason: Option<&str>) -> Self {
        Choice {
            index,
            message,
            finish_reason: finish_reason.map(str::to_owned),
            logprobs: None,
            extra: Map::new(),
        }
    }
}

/// The assistant message of a complete reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: Role,
    /// The text; `null` when only tool calls were returned.
    #[serde(default)]
    pub content: Option<String>,
    /// Refusal text, if the model refused.
    #[serde(default)]
    pub refusal: Option<String>,
    /// Tool calls, with arguments as JSON strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Reasoning text (non-standard `reasoning_content`, as many OpenAI-compatible servers send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The reasoning as blocks, with Claude's signatures (non-standard `thinking_blocks`): what a
    /// client sends back on its assistant turn so Claude can verify its own reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
    /// Other members (`annotations`, `audio`, …), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResponseMessage {
    /// An assistant message with text and optional tool calls.
    pub fn assistant(content: Option<String>, tool_calls: Option<Vec<ToolCall>>) -> Self {
        ResponseMessage {
            role: Role::Assistant,
            content,
            refusal: None,
            tool_calls,
            reasoning_content: None,
            thinking_blocks: None,
            extra: Map::new(),
        }
    }
}

/// Token usage in OpenAI terms (`prompt_tokens` includes cached tokens).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// All input tokens, cached ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// All generated tokens, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// prompt + completion.
    #[serde(default)]
    pub total_tokens: u64,
    /// Cache breakdown of the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Breakdown of the completion, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<Value>,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Usage {
    /// Usage from input/output counts plus cache reads and writes (all disjoint, as Bedrock reports
    /// them). The sums saturate: the counts come from an upstream, and no count of theirs wraps
    /// (or panics).
    pub fn from_parts(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Self {
        let prompt = input.saturating_add(cache_read).saturating_add(cache_write);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: output,
            total_tokens: prompt.saturating_add(output),
            prompt_tokens_details: (cache_read > 0 || cache_write > 0).then(|| {
                PromptTokensDetails {
                    cached_tokens: Some(cache_read),
                    cache_write_tokens: (cache_write > 0).then_some(cache_write),
                    extra: Map::new(),
                }
            }),
            completion_tokens_details: None,
            extra: Map::new(),
        }
    }

    /// Tokens read from the prompt cache.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
    }

    /// Tokens written to the prompt cache.
    pub fn cache_write_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cache_write_tokens)
            .unwrap_or(0)
    }

    /// Input tokens neither read from nor written to the cache.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.cached_tokens())
            .saturating_sub(self.cache_write_tokens())
    }

    /// Reasoning tokens (`completion_tokens_details.reasoning_tokens`), where the upstream
    /// reported them.
    pub fn reasoning_tokens(&self) -> Option<u64> {
        self.completion_tokens_details
            .as_ref()?
            .get("reasoning_tokens")?
            .as_u64()
    }

    /// Adds `other` into this usage (the choices of a fanned-out `n > 1` call).
    pub fn add(&mut self, other: &Usage) {
        let (read, write) = (
            self.cached_tokens().saturating_add(other.cached_tokens()),
            self.cache_write_tokens()
                .saturating_add(other.cache_write_tokens()),
        );
        let reasoning = match (self.reasoning_tokens(), other.reasoning_tokens()) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        let mut sum = Usage::from_parts(
            self.uncached_input_tokens()
                .saturating_add(other.uncached_input_tokens()),
            self.completion_tokens
                .saturating_add(other.completion_tokens),
            read,
            write,
        );
        if let Some(r) = reasoning {
            sum.completion_tokens_details = Some(serde_json::json!({ "reasoning_tokens": r }));
        }
        *self = sum;
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PromptTokensDetails {
    /// Input tokens served from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Input tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One streamed chunk (`chat.completion.chunk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatChunk {
    /// Same id on every chunk of a stream.
    pub id: String,
    /// Always `chat.completion.chunk`.
    #[serde(default = "chunk_object")]
    pub object: String,
    /// Unix seconds, same on every chunk.
    #[serde(default)]
    pub created: u64,
    /// The model as requested.
    #[serde(default)]
    pub model: String,
    /// Deltas; empty on the usage chunk.
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Full usage on the final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatChunk {
    /// A chunk with one choice at index 0.
    pub fn delta(meta: &ChunkMeta, delta: Delta, finish_reason: Option<&str>) -> Self {
        ChatChunk {
            id: meta.id.clone(),
            object: chunk_object(),
            created: meta.created,
            model: meta.model.clone(),
            choices: vec![ChunkChoice::new(0, delta, finish_reason)],
            usage: None,
            extra: Map::new(),
        }
    }

    /// The final usage chunk (`choices: []`).
    pub fn usage(meta: &ChunkMeta, usage: Usage) -> Self {
        ChatChunk {
            id: meta.id.clone(),
            object: chunk_object(),
            created: meta.created,
            model: meta.model.clone(),
            choices: Vec::new(),
            usage: Some(usage),
            extra: Map::new(),
        }
    }

    /// Whether this is the usage-only chunk.
    pub fn is_usage_only(&self) -> bool {
        self.choices.is_empty() && self.usage.is_some()
    }
}

/// What stays the same on every chunk of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkMeta {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model as requested.
    pub model: String,
}

impl ChunkMeta {
    /// Metadata for a new stream of `model`, with a fresh id and the current time.
    pub fn new(model: impl Into<String>) -> Self {
        ChunkMeta::from_parts(super::completion_id(), super::unix_now(), model)
    }

    /// Metadata with a given id and creation time (an upstream's own, or fixed ones in tests).
    pub fn from_parts(id: impl Into<String>, created: u64, model: impl Into<String>) -> Self {
        ChunkMeta {
            id: id.into(),
            created,
            model: model.into(),
        }
    }
}

/// One choice of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChunkChoice {
    /// Choice position.
    #[serde(default)]
    pub index: u32,
    /// What changed.
    #[serde(default)]
    pub delta: Delta,
    /// Set only on the chunk that ends the choice.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Always `null` from Bedrock.
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChunkChoice {
    /// Choice `index` changed by `delta`; `finish_reason` on the chunk that ends it.
    pub fn new(index: u32, delta: Delta, finish_reason: Option<&str>) -> Self {
        ChunkChoice {
            index,
            delta,
            finish_reason: finish_reason.map(str::to_owned),
            logprobs: None,
            extra: Map::new(),
        }
    }
}

/// The changed part of the assistant message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Delta {
    /// `assistant` on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// A text piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A refusal piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// A reasoning piece (non-standard `reasoning_content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Signed-reasoning pieces (non-standard `thinking_blocks`): a thinking block's `signature`
    /// when it ends, or a whole redacted block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Delta {
    /// The opening delta: `{"role":"assistant","content":""}`.
    pub fn role() -> Self {
        Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        }
    }

    /// A text delta.
    pub fn text(text: impl Into<String>) -> Self {
        Delta {
            content: Some(text.into()),
            ..Delta::default()
        }
    }

    /// A tool-call fragment.
    pub fn tool_call(fragment: ToolCallDelta) -> Self {
        Delta {
            tool_calls: Some(vec![fragment]),
            ..Delta::default()
        }
    }
}

/// A fragment of one tool call inside a delta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCallDelta {
    /// Position of the call in the message (not the upstream block index).
    pub index: u32,
    /// Call id, on the first fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on the first fragment.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first fragment) and an arguments piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

impl ToolCallDelta {
    /// The first fragment of call `index`: id, type, name and empty arguments.
    pub fn start(index: u32, id: impl Into<String>, name: impl Into<String>) -> Self {
        ToolCallDelta {
            index,
            id: Some(id.into()),
            kind: Some("function".to_owned()),
            function: Some(FunctionCallDelta {
                name: Some(name.into()),
                arguments: Some(String::new()),
            }),
        }
    }

    /// A later fragment of call `index` carrying an arguments piece.
    pub fn arguments(index: u32, piece: impl Into<String>) -> Self {
        ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some(piece.into()),
            }),
        }
    }
}

/// Function part of a tool-call fragment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FunctionCallDelta {
    /// Function name, on the first fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the JSON-encoded arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}
