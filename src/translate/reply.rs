//! The reply encoders: a canonical reply written as a [`ReplyFormat`] says.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::eventstream::EventStreamFramer;
use crate::format::bedrock_claude::{self, ClaudeStreamEncoder};
use crate::format::bedrock_titan::{self, TitanStreamEncoder};
use crate::format::converse::{self, ConverseStreamEncoder};
use crate::format::openai::OpenAiStreamEncoder;
use crate::format::responses::{ResponsesFramer, ResponsesStreamEncoder};
use crate::format::{InboundFormat, ReplyFormat};
use crate::model::{ChatResponse, ChunkStream, RelayedStream, Usage};
use crate::sse::SseFramer;
use crate::stream::relay::RelayEncoder;
use crate::stream::{EncodedBody, EventEncoder, Framer};

/// A complete reply: its JSON body and the headers that go with it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CompleteReply {
    /// The JSON body.
    pub body: Bytes,
    /// `Content-Type`, plus Bedrock's token-count headers on `invoke`.
    pub headers: HeaderMap,
}

/// Encodes a complete canonical reply as `reply` says.
///
/// ```
/// use open_bedrock_server::format::ReplyFormat;
/// use open_bedrock_server::model::{ChatResponse, ChunkMeta, ResponseMessage, Usage};
/// use open_bedrock_server::translate::encode_complete;
///
/// let response = ChatResponse::new(
///     &ChunkMeta::new("gpt-4o"),
///     ResponseMessage::assistant(Some("Hi!".into()), None),
///     "stop",
///     Some(Usage::from_parts(5, 2, 0, 0)),
/// );
/// let titan = encode_complete(&response, ReplyFormat::BedrockInvokeTitan);
/// let json: serde_json::Value = serde_json::from_slice(&titan.body).unwrap();
/// assert_eq!(json["results"][0]["outputText"], "Hi!");
/// assert_eq!(titan.headers["x-amzn-bedrock-output-token-count"], "2");
/// ```
pub fn encode_complete(response: &ChatResponse, reply: ReplyFormat) -> CompleteReply {
    encode_complete_in(HeaderMap::new(), response, reply)
}

/// [`encode_complete`] with the headers written into `room` (see [`Room`]).
pub(crate) fn encode_complete_in(
    room: HeaderMap,
    response: &ChatResponse,
    reply: ReplyFormat,
) -> CompleteReply {
    let json = match reply {
        ReplyFormat::Claude | ReplyFormat::BedrockInvokeClaude => {
            serde_json::to_vec(&bedrock_claude::encode_client_response(response))
        }
        ReplyFormat::Titan | ReplyFormat::BedrockInvokeTitan => {
            serde_json::to_vec(&bedrock_titan::encode_client_response(response))
        }
        ReplyFormat::BedrockConverse => {
            serde_json::to_vec(&converse::encode_client_response(response))
        }
        // OpenAI, and the canonical shape for any newer reply format.
        _ => serde_json::to_vec(response),
    };
    CompleteReply {
        // Serializing our own types into memory cannot fail.
        body: Bytes::from(json.unwrap_or_default()),
        headers: complete_headers(room, reply, response.usage.as_ref()),
    }
}

/// Room in a reply's header map for its own headers and for those the layers above add on the
/// way out (`x-gateway-provider`, `-deployment` and `-cost`, `x-request-id`, the limiter's three
/// or six `x-ratelimit-*`): twelve fill one table of sixteen slots, so for most replies the map is
/// allocated once instead of grown and rehashed when the seventh header arrives (a Bedrock
/// `invoke` reply with cache counts and a token budget can still reach fifteen).
const REPLY_HEADERS: usize = 12;

/// The largest request header map [`Room`] keeps (its capacity, in headers): a table of 32
/// slots, room for an SDK's request of a dozen or more headers.
const MAX_ROOM: usize = 2 * REPLY_HEADERS;

/// A chat request's header map and extensions, emptied, as room for its reply's (an error reply,
/// and the embeddings and Responses routes' replies, make their own).
///
/// hyper parses each request on an HTTP/1.1 connection into the header map the connection's last
/// reply was written from. A reply written into its own request's map makes that one table per
/// connection, instead of one table freed and one allocated per request (the table for twelve
/// headers is larger than glibc's per-thread cache takes, so each was a trip to its shared bins).
/// The extensions likewise: the response's go into the request's map, made with room for them
/// (`server::connection`), instead of a map and a table of their own.
///
/// A header map that a request with many headers, or many values of one, grew past [`MAX_ROOM`]
/// is dropped, not kept for the connection's life.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Empty, with the request's table.
    pub(crate) headers: HeaderMap,
    /// Empty, with the request's table.
    pub(crate) extensions: http::Extensions,
}

impl Room {
    /// `parts`' header map and extensions, taken and emptied: none of the request's can reach
    /// the reply.
    pub(crate) fn of(parts: &mut http::request::Parts) -> Room {
        let mut headers = std::mem::take(&mut parts.headers);
        // `len` counts a name's repeated values too: their list keeps its room when cleared.
        if headers.capacity() > MAX_ROOM || headers.len() > MAX_ROOM {
            headers = HeaderMap::new();
        }
        headers.clear();
        let mut extensions = std::mem::take(&mut parts.extensions);
        extensions.clear();
        Room {
            headers,
            extensions,
        }
    }
}

/// `room` (empty) with space for a reply's headers.
fn with_reply_room(mut room: HeaderMap) -> HeaderMap {
    debug_assert!(room.is_empty());
    room.reserve(REPLY_HEADERS);
    room
}

/// The headers of a complete reply, in `room`: `Content-Type`, plus Bedrock's token counts on
/// `invoke`.
pub(crate) fn complete_headers(
    room: HeaderMap,
    reply: ReplyFormat,
    usage: Option<&Usage>,
) -> HeaderMap {
    let mut headers = with_reply_room(room);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if matches!(
        reply,
        ReplyFormat::BedrockInvokeClaude | ReplyFormat::BedrockInvokeTitan
    ) {
        if let Some(usage) = usage {
            headers.insert(
                crate::header_name::X_AMZN_BEDROCK_INPUT_TOKEN_COUNT.clone(),
                crate::header_value::int(usage.uncached_input_tokens()),
            );
            headers.insert(
                crate::header_name::X_AMZN_BEDROCK_OUTPUT_TOKEN_COUNT.clone(),
                crate::header_value::int(usage.completion_tokens),
            );
            // As Bedrock does when prompt caching applies.
            let (read, write) = (usage.cached_tokens(), usage.cache_write_tokens());
            if read > 0 || write > 0 {
                headers.insert(
                    crate::header_name::X_AMZN_BEDROCK_CACHE_READ_INPUT_TOKEN_COUNT.clone(),
                    crate::header_value::int(read),
                );
                headers.insert(
                    crate::header_name::X_AMZN_BEDROCK_CACHE_WRITE_INPUT_TOKEN_COUNT.clone(),
                    crate::header_value::int(write),
                );
            }
        }
    }
    headers
}

/// Whether a reply written in `format` is what a client of `reply` reads, byte for byte.
pub(crate) fn relays(format: InboundFormat, reply: ReplyFormat) -> bool {
    matches!(
        (format, reply),
        (InboundFormat::OpenAi, ReplyFormat::OpenAi)
            | (
                InboundFormat::BedrockClaude,
                ReplyFormat::Claude | ReplyFormat::BedrockInvokeClaude
            )
            | (
                InboundFormat::BedrockTitan,
                ReplyFormat::Titan | ReplyFormat::BedrockInvokeTitan
            )
    )
}

/// How a streamed body is set up.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    /// Whether the OpenAI client asked for the usage chunk.
    pub(crate) include_usage: bool,
    /// Idle time before a keep-alive (SSE only).
    pub(crate) keep_alive: Option<Duration>,
    /// Ends open streams with an in-band error at shutdown.
    pub(crate) shutdown: Option<CancellationToken>,
    /// Closes the connection when the client stops reading for this long.
    pub(crate) reader: Option<(Duration, crate::server::ConnectionCloser)>,
}

/// The body and headers of a streamed reply in `reply`'s format and wire.
pub(crate) fn stream_reply(
    stream: ChunkStream,
    reply: ReplyFormat,
    settings: &StreamSettings,
    room: HeaderMap,
) -> (Body, HeaderMap) {
    let sse = || SseFramer::new(reply.error_dialect());
    let (body, content_type) = match reply {
        ReplyFormat::Claude => encoded(stream, ClaudeStreamEncoder::new(), sse(), settings),
        ReplyFormat::Titan => encoded(stream, TitanStreamEncoder::new(), sse(), settings),
        ReplyFormat::BedrockInvokeClaude => encoded(
            stream,
            ClaudeStreamEncoder::bedrock(),
            EventStreamFramer::invoke_chunks(),
            settings,
        ),
        ReplyFormat::BedrockInvokeTitan => encoded(
            stream,
            TitanStreamEncoder::bedrock(),
            EventStreamFramer::invoke_chunks(),
            settings,
        ),
        ReplyFormat::BedrockConverse => encoded(
            stream,
            ConverseStreamEncoder::new(),
            EventStreamFramer::new(),
            settings,
        ),
        _ => encoded(
            stream,
            OpenAiStreamEncoder::new(settings.include_usage),
            sse(),
            settings,
        ),
    };
    (body, stream_headers(room, reply, content_type))
}

/// A Responses stream: `encoder`'s typed events as SSE, an in-band error numbered after them.
pub(crate) fn responses_stream_reply(
    stream: ChunkStream,
    encoder: ResponsesStreamEncoder,
    seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
    settings: &StreamSettings,
) -> (Body, HeaderMap) {
    let (body, content_type) = encoded(stream, encoder, ResponsesFramer::new(seq), settings);
    let headers = stream_headers(HeaderMap::new(), ReplyFormat::Responses, content_type);
    (body, headers)
}

/// The body and headers of a relayed stream (payloads in `format`, which `reply` reads).
pub(crate) fn relayed_stream_reply(
    stream: RelayedStream,
    format: InboundFormat,
    reply: ReplyFormat,
    settings: &StreamSettings,
    room: HeaderMap,
) -> (Body, HeaderMap) {
    let encoder = RelayEncoder::new(format, settings.include_usage);
    let (body, content_type) = match reply {
        ReplyFormat::BedrockInvokeClaude | ReplyFormat::BedrockInvokeTitan => encoded(
            stream,
            encoder,
            EventStreamFramer::invoke_chunks(),
            settings,
        ),
        _ => encoded(
            stream,
            encoder,
            SseFramer::new(reply.error_dialect()),
            settings,
        ),
    };
    (body, stream_headers(room, reply, content_type))
}

/// The headers of a streamed reply, in `room`.
fn stream_headers(room: HeaderMap, reply: ReplyFormat, content_type: &'static str) -> HeaderMap {
    let mut headers = with_reply_room(room);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if reply.error_dialect() == crate::error::ErrorDialect::Bedrock {
        headers.insert(
            crate::header_name::X_AMZN_BEDROCK_CONTENT_TYPE.clone(),
            HeaderValue::from_static("application/json"),
        );
    } else {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            crate::header_name::X_ACCEL_BUFFERING.clone(),
            HeaderValue::from_static("no"),
        );
    }
    headers
}

fn encoded<E, F, S, C>(
    stream: S,
    encoder: E,
    framer: F,
    settings: &StreamSettings,
) -> (Body, &'static str)
where
    E: EventEncoder<C>,
    F: Framer,
    S: futures_util::Stream<Item = Result<C, crate::error::GatewayError>> + Unpin + Send + 'static,
    C: 'static,
{
    let content_type = framer.content_type();
    let body = EncodedBody::new(stream, encoder, framer, settings.keep_alive);
    let body = match &settings.shutdown {
        Some(token) => body.with_shutdown(token),
        None => body,
    };
    let body = match &settings.reader {
        Some((timeout, closer)) => body.with_reader_timeout(*timeout, closer.clone()),
        None => body,
    };
    (Body::new(body), content_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_with(headers: &[(&'static str, &'static str)]) -> http::request::Parts {
        let mut req = http::Request::new(());
        for (name, value) in headers {
            req.headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        req.extensions_mut().insert(7u8);
        req.into_parts().0
    }

    #[test]
    fn a_room_is_empty_and_keeps_only_a_table_of_modest_size() {
        // A few headers: kept, emptied, extensions too.
        let mut parts = parts_with(&[("x-a", "1"), ("x-b", "2"), ("host", "gw")]);
        let room = Room::of(&mut parts);
        assert!(room.headers.is_empty() && room.extensions.is_empty());
        assert!(room.headers.capacity() > 0, "the table is kept");
        assert!(parts.headers.is_empty() && parts.extensions.is_empty());
        // Many values of one name (as HTTP/2 builds a map, without reserving): the table stays
        // small, but the values' list is not kept either.
        let many = [("x-a", "1"); 40];
        let room = Room::of(&mut parts_with(&many));
        assert!(room.headers.is_empty());
        assert_eq!(room.headers.capacity(), 0, "not kept");
        // Many names: not kept.
        let mut parts = parts_with(&[]);
        for i in 0..40 {
            parts.headers.insert(
                http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert_eq!(Room::of(&mut parts).headers.capacity(), 0, "not kept");
        // Written into: what the reply writes, nothing else.
        let room = Room::of(&mut parts_with(&[("x-probe", "secret")]));
        let headers = complete_headers(room.headers, ReplyFormat::OpenAi, None);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    }
}
