//! The OpenAI Responses API (`/v1/responses`) as a client dialect over the canonical chat model,
//! so it works in front of every chat provider.
//!
//! - **Client request** ([`decode_client_request`]): `input` (a string, or items: messages with
//!   `input_text`/`input_image`/`input_file` parts, `function_call` and `function_call_output`),
//!   `instructions` (the system message), function `tools` (flat → chat's nested form),
//!   `tool_choice`, `max_output_tokens` (→ `max_completion_tokens`), `temperature`, `top_p`,
//!   `text.format` (→ `response_format`, so structured outputs take the same path as chat's
//!   `json_schema` on every provider), `reasoning.effort` (→ `reasoning_effort`),
//!   `parallel_tool_calls`, `metadata`, `store`, `previous_response_id` (the stored
//!   conversation goes before the input). Built-in tools (web search, file search, computer use,
//!   …) are a 400 naming `tools[i].type`; an unknown member is a 400 naming it.
//! - **Client reply** ([`encode_client_response`], [`ResponsesStreamEncoder`]): the Response
//!   object (`output` items `reasoning`, `message` with `output_text`, `function_call`; `usage`
//!   with `input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`), and
//!   the typed event sequence through the shared [`EventEncoder`](crate::stream::EventEncoder)
//!   machinery, each event with its `sequence_number` ([`ResponsesFramer`] numbers an in-band
//!   `error` event after them).
//!
//! ```
//! use open_bedrock_server::format::responses::{decode_client_request, encode_client_response, ResponseMeta};
//! use open_bedrock_server::model::{ChatResponse, ChunkMeta, ResponseMessage, Usage};
//!
//! let req = decode_client_request(br#"{"model":"gpt-4o","instructions":"Be brief.",
//!     "input":"Hi","text":{"format":{"type":"json_schema","name":"a","schema":{"type":"object"}}}}"#, &[]).unwrap();
//! let chat = serde_json::to_value(&req.chat).unwrap();
//! assert_eq!(chat["messages"][0]["role"], "system");
//! assert_eq!(chat["response_format"]["type"], "json_schema");
//!
//! let reply = ChatResponse::new(&ChunkMeta::new("gpt-4o"),
//!     ResponseMessage::assistant(Some("Hello!".into()), None), "stop", Some(Usage::from_parts(5, 2, 0, 0)));
//! let (object, turn) = encode_client_response(&ResponseMeta::new("gpt-4o", req.echo), &reply);
//! assert_eq!(object["object"], "response");
//! assert_eq!(object["status"], "completed");
//! assert_eq!(object["output"][0]["content"][0]["text"], "Hello!");
//! assert_eq!(object["instructions"], "Be brief.");
//! assert_eq!(object["usage"]["input_tokens"], 5);
//! assert_eq!(turn["role"], "assistant");
//! ```

mod client_reply;
mod client_request;

pub use client_reply::{
    encode_client_response, response_id, usage_object, OnComplete, ResponseMeta, ResponsesEvent,
    ResponsesFramer, ResponsesStreamEncoder,
};
pub use client_request::{
    decode_client_request, forward_only, previous_response_id, ResponsesRequest,
};
