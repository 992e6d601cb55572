//! `n > 1` on Bedrock: one call per choice, since Bedrock models answer with one.
//!
//! The `n` calls run concurrently (each the whole single-choice path: encoding, the upstream
//! call, lifting structured outputs), bounded by the configured maximum. A complete reply gets
//! their choices indexed `0..n` and their usage summed; a stream interleaves their chunks as
//! they come, each choice's with its own `index`, under one id, and ends with one usage chunk
//! that sums all of them. Any call's error fails the reply (before the first byte), or ends the
//! stream with that error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{SelectAll, StreamExt};
use futures_util::Stream;

use crate::error::GatewayError;
use crate::model::{ChatCall, ChatChunk, ChatReply, ChunkStream, Usage};

type Tagged = Pin<Box<dyn Stream<Item = (u32, Result<ChatChunk, GatewayError>)> + Send>>;

/// Answers `call` (whose request asks for `n` choices) with `n` single-choice calls of `one`.
pub(crate) async fn fan_out<F, Fut>(
    n: u32,
    call: ChatCall,
    one: F,
) -> Result<ChatReply, GatewayError>
where
    F: Fn(ChatCall) -> Fut,
    Fut: Future<Output = Result<ChatReply, GatewayError>>,
{
    let mut single = (*call.request).clone();
    single.n = None;
    let single = ChatCall {
        request: Arc::new(single),
        context: call.context.clone(),
        route: call.route.clone(),
    };
    let replies = futures_util::future::try_join_all((0..n).map(|_| one(single.clone()))).await?;
    merge(replies)
}

fn merge(replies: Vec<ChatReply>) -> Result<ChatReply, GatewayError> {
    let mut complete = Vec::new();
    let mut streams = Vec::new();
    for reply in replies {
        // Choices are renumbered: relayed bytes are decoded first.
        let reply = match reply {
            ChatReply::Relayed(r) => crate::stream::relay::canonical(r)?,
            other => other,
        };
        match reply {
            ChatReply::Relayed(_) => {
                return Err(GatewayError::internal(
                    "a relayed reply decoded to a relayed one",
                ))
            }
            ChatReply::Complete(r) => complete.push(r),
            ChatReply::Stream(s) => streams.push(s),
        }
    }
    if !streams.is_empty() {
        return Ok(ChatReply::Stream(merge_streams(streams)));
    }
    let mut replies = complete.into_iter();
    let mut first = replies
        .next()
        .ok_or_else(|| GatewayError::internal("fan-out without a reply"))?;
    for (i, choice) in first.choices.iter_mut().enumerate() {
        choice.index = u32::try_from(i).unwrap_or(u32::MAX);
    }
    for reply in replies {
        for mut choice in reply.choices {
            choice.index = u32::try_from(first.choices.len()).unwrap_or(u32::MAX);
            first.choices.push(choice);
        }
        match (&mut first.usage, reply.usage) {
            (Some(total), Some(u)) => total.add(&u),
            (total @ None, Some(u)) => *total = Some(u),
            _ => {}
        }
    }
    Ok(ChatReply::Complete(first))
}

fn merge_streams(streams: Vec<ChunkStream>) -> ChunkStream {
    let mut all: SelectAll<Tagged> = SelectAll::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        all.push(Box::pin(stream.map(move |item| (i, item))));
    }
    ChunkStream::new(FanIn {
        streams: all,
        meta: None,
        usage: None,
        done: false,
    })
}

/// The interleaved choices of `n` streams.
struct FanIn {
    streams: SelectAll<Tagged>,
    /// `(id, created, model)` of the first chunk, given to every chunk.
    meta: Option<(String, u64, String)>,
    usage: Option<Usage>,
    done: bool,
}

impl Stream for FanIn {
    type Item = Result<ChatChunk, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.streams.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    let (Some(usage), Some((id, created, model))) =
                        (this.usage.take(), this.meta.clone())
                    else {
                        return Poll::Ready(None);
                    };
                    let meta = crate::model::ChunkMeta { id, created, model };
                    return Poll::Ready(Some(Ok(ChatChunk::usage(&meta, usage))));
                }
                Poll::Ready(Some((_, Err(e)))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some((index, Ok(mut chunk)))) => {
                    let (id, created, _) = this
                        .meta
                        .get_or_insert_with(|| {
                            (chunk.id.clone(), chunk.created, chunk.model.clone())
                        })
                        .clone();
                    if let Some(u) = chunk.usage.take() {
                        match &mut this.usage {
                            Some(total) => total.add(&u),
                            None => this.usage = Some(u),
                        }
                    }
                    if chunk.choices.is_empty() {
                        continue; // a choice's own usage chunk: summed above
                    }
                    chunk.id = id;
                    chunk.created = created;
                    for choice in &mut chunk.choices {
                        choice.index = index;
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChatResponse, ChunkMeta, Delta, ResponseMessage};

    #[test]
    fn complete_replies_index_their_choices_and_sum_usage() {
        let reply = |text: &str, n| {
            ChatReply::Complete(ChatResponse::new(
                &ChunkMeta::new("m"),
                ResponseMessage::assistant(Some(text.into()), None),
                "stop",
                Some(Usage::from_parts(10, n, 5, 0)),
            ))
        };
        let ChatReply::Complete(r) = merge(vec![reply("a", 1), reply("b", 2)]).unwrap() else {
            panic!("not complete")
        };
        let got: Vec<(u32, Option<String>)> = r
            .choices
            .iter()
            .map(|c| (c.index, c.message.content.clone()))
            .collect();
        assert_eq!(got, [(0, Some("a".into())), (1, Some("b".into()))]);
        assert_eq!(r.usage, Some(Usage::from_parts(20, 3, 10, 0)));
    }

    #[tokio::test]
    async fn streams_interleave_by_index_under_one_id_with_one_usage_chunk() {
        let stream = |text: &str, out| {
            let meta = ChunkMeta::new("m");
            ChunkStream::from_chunks(vec![
                Ok(ChatChunk::delta(&meta, Delta::text(text), None)),
                Ok(ChatChunk::delta(&meta, Delta::default(), Some("stop"))),
                Ok(ChatChunk::usage(&meta, Usage::from_parts(4, out, 0, 0))),
            ])
        };
        let ChatReply::Stream(s) = merge(vec![
            ChatReply::Stream(stream("a", 1)),
            ChatReply::Stream(stream("b", 2)),
        ])
        .unwrap() else {
            panic!("not a stream")
        };
        let chunks: Vec<ChatChunk> = s.map(Result::unwrap).collect().await;
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.id == chunks[0].id));
        let mut texts: Vec<(u32, String)> = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| Some((c.index, c.delta.content.clone()?)))
            .collect();
        texts.sort();
        assert_eq!(texts, [(0, "a".into()), (1, "b".into())]);
        let last = chunks.last().unwrap();
        assert!(last.is_usage_only());
        assert_eq!(last.usage, Some(Usage::from_parts(8, 3, 0, 0)));
    }
}
