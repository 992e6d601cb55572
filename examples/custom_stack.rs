//! Your own tower stack: only the gateway's format layers in front of a hand-written provider.
//!
//! ```text
//! DetectLayer (read the body once, detect OpenAI / Bedrock Claude / Bedrock Titan, ?target_format=)
//!   → TranslateLayer (decode into the canonical ChatRequest, encode the reply in the target format)
//!     → canned_provider (a tower::service_fn: ChatCall → ChatReply)
//! ```
//!
//! No auth, no rate limit, no routing, no upstream: the "provider" answers every [`ChatCall`] with
//! `You said: <last user message>`, as one complete [`ChatResponse`] or, when the client asked for a
//! stream, as a [`ChunkStream`] of word-sized chunks. Because detection and translation are the
//! library's, every inbound format and every target format works against it:
//!
//! ```text
//! cargo run --example custom_stack            # listening on 127.0.0.1:8000 (PORT=0: a free port)
//! # OpenAI in, OpenAI out
//! curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \
//!     -d '{"model":"echo","messages":[{"role":"user","content":"Hello"}]}'
//! # Bedrock Claude in, Bedrock Claude out
//! curl -s 'localhost:8000/v1/chat/completions?target_format=bedrock_claude' \
//!     -H 'content-type: application/json' \
//!     -d '{"anthropic_version":"bedrock-2023-05-31","model":"echo","max_tokens":50,
//!          "messages":[{"role":"user","content":"Hello"}]}'
//! # Bedrock Titan in, Titan stream out
//! curl -sN 'localhost:8000/v1/chat/completions?target_format=bedrock_titan' \
//!     -H 'content-type: application/json' \
//!     -d '{"model":"echo","inputText":"User: Hello\nBot:","stream":true}'
//! ```
//!
//! The stack has no router, so it answers every path and method as a chat completion; put it
//! behind your own routing (or use `Gateway::ingress`, which adds auth, rate limits and the
//! in-flight limit around any typed core) for anything beyond a demo. The server is a plain
//! hyper-util accept loop; `HOST`/`PORT` choose the address and `listening on <addr>` is printed
//! once bound.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use open_bedrock_server::detect::DetectLayer;
use open_bedrock_server::error::GatewayError;
use open_bedrock_server::model::{
    finish_reason, ChatCall, ChatChunk, ChatReply, ChatResponse, ChunkMeta, ChunkStream, Delta,
    Message, ResponseMessage, Role, Usage,
};
use open_bedrock_server::translate::TranslateLayer;
use tower::ServiceBuilder;

/// The hand-written provider: a fixed answer echoing the last user message.
async fn canned_provider(call: ChatCall) -> Result<ChatReply, GatewayError> {
    let request = &call.request;
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(Message::text_content)
        .unwrap_or_default();
    let text = format!("You said: {last_user}");
    let prompt_tokens: usize = request
        .messages
        .iter()
        .map(|m| m.text_content().split_whitespace().count())
        .sum();
    let usage = Usage::from_parts(
        prompt_tokens as u64,
        text.split_whitespace().count() as u64,
        0,
        0,
    );

    if request.is_stream() {
        // The id, timestamp and model stay the same on every chunk of one stream.
        let meta = ChunkMeta::new(request.model.clone());
        let mut items = vec![Ok(ChatChunk::delta(&meta, Delta::role(), None))];
        items.extend(
            text.split_inclusive(' ')
                .map(|word| Ok(ChatChunk::delta(&meta, Delta::text(word), None))),
        );
        items.push(Ok(ChatChunk::delta(
            &meta,
            Delta::default(),
            Some(finish_reason::STOP),
        )));
        // Claude and Titan targets always ask for usage (their streams end with token counts).
        if request.include_usage() {
            items.push(Ok(ChatChunk::usage(&meta, usage)));
        }
        return Ok(ChatReply::Stream(ChunkStream::from_chunks(items)));
    }

    Ok(ChatReply::Complete(ChatResponse::new(
        &ChunkMeta::new(request.model.clone()),
        ResponseMessage::assistant(Some(text), None),
        finish_reason::STOP,
        Some(usage),
    )))
}

fn listen_addr() -> Result<SocketAddr, String> {
    let host: IpAddr = match std::env::var("HOST") {
        Ok(h) if !h.trim().is_empty() => h
            .trim()
            .parse()
            .map_err(|_| format!("HOST `{h}` is not an IP address"))?,
        _ => Ipv4Addr::LOCALHOST.into(),
    };
    let port: u16 = match std::env::var("PORT") {
        Ok(p) if !p.trim().is_empty() => p
            .trim()
            .parse()
            .map_err(|_| format!("PORT `{p}` is not a port number"))?,
        _ => 8000,
    };
    Ok(SocketAddr::new(host, port))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The user's own stack: just the two format layers around the typed provider.
    let service = ServiceBuilder::new()
        .layer(DetectLayer::chat(1024 * 1024))
        .layer(TranslateLayer::new(Some(Duration::from_secs(15))))
        .service(tower::service_fn(canned_provider));

    let addr = listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;

    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("custom_stack: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        // hyper calls with `Request<Incoming>`; DetectLayer accepts any `http_body::Body`.
        let hyper_service = TowerToHyperService::new(service.clone());
        let builder = builder.clone();
        tokio::spawn(async move {
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), hyper_service)
                .await
            {
                eprintln!("custom_stack: connection error: {e}");
            }
        });
    }
}
