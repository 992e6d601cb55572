//! Open Bedrock Server: a chat-completions gateway for OpenAI and AWS Bedrock, as tower layers.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod body;
pub mod error;
pub mod format;
pub mod model;
pub mod sse;
