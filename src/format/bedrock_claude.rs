//! Placeholder until the codec lands.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
use bytes::BytesMut;
use serde_json::{Map, Value};
use crate::error::GatewayError;
use crate::model::{ChatChunk, ChatRequest, ChatResponse};
pub fn decode_client_request(_b: &Map<String, Value>) -> Result<ChatRequest, GatewayError> { Err(GatewayError::invalid_request("not yet")) }
pub fn encode_client_response(r: &ChatResponse) -> Value { serde_json::to_value(r).unwrap_or_default() }
pub struct ClaudeSseEncoder;
impl ClaudeSseEncoder { pub fn new() -> Self { ClaudeSseEncoder } }
impl super::StreamEncoder for ClaudeSseEncoder {
    fn encode(&mut self, _c: &ChatChunk, _o: &mut BytesMut) {}
    fn encode_error(&mut self, _e: &GatewayError, _o: &mut BytesMut) {}
    fn finish(&mut self, _o: &mut BytesMut) {}
}
