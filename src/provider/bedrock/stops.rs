//! Stop sequences Titan cannot take, applied to its replies by the gateway.
//!
//! Titan accepts a single stop sequence, and only `|`-runs or `User:`; every other stop string is
//! left out of the upstream body and enforced here instead, so a client's `stop` is never
//! silently ignored. Complete replies are cut at the first match ([`truncate_complete`]); streams
//! go through [`StopAtSequences`], which holds back just enough text to see a stop string that
//! spans two chunks, cuts at the first match, reports `finish_reason: "stop"`, drops the text that
//! follows, and still passes the final usage chunk.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::error::GatewayError;
use crate::model::{finish_reason, ChatChunk, ChatResponse, ChunkStream, Delta};

/// Cuts every choice of a complete reply at the first stop string.
pub(crate) fn truncate_complete(response: &mut ChatResponse, stops: &[String]) {
    if stops.is_empty() {
        return;
    }
    for choice in &mut response.choices {
        if let Some(text) = choice.message.content.as_mut() {
            if let Some(cut) = first_match(text, stops) {
                text.truncate(cut);
                choice.finish_reason = Some(finish_reason::STOP.to_owned());
            }
        }
    }
}

fn first_match(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// A stream with `stops` applied.
pub(crate) fn stop_at_sequences(stream: ChunkStream, stops: Vec<String>) -> ChunkStream {
    if stops.iter().all(String::is_empty) {
        return stream;
    }
    let hold = stops
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(1)
        .saturating_sub(1);
    ChunkStream::new(StopAtSequences {
        inner: stream,
        stops,
        hold,
        held: String::new(),
        template: None,
        stopped: false,
        out: VecDeque::new(),
    })
}

struct StopAtSequences {
    inner: ChunkStream,
    stops: Vec<String>,
    /// Bytes to hold back: one less than the longest stop string.
    hold: usize,
    held: String,
    /// A chunk to copy id/model/created from when emitting held text.
    template: Option<ChatChunk>,
    stopped: bool,
    out: VecDeque<Result<ChatChunk, GatewayError>>,
}

impl StopAtSequences {
    fn text_chunk(&self, text: String) -> Option<ChatChunk> {
        let mut c = self.template.clone()?;
        if let Some(choice) = c.choices.first_mut() {
            choice.delta = Delta::text(text);
            choice.finish_reason = None;
        }
        c.usage = None;
        Some(c)
    }

    fn accept(&mut self, mut chunk: ChatChunk) {
        if chunk.is_usage_only() {
            self.flush_all();
            self.out.push_back(Ok(chunk));
            return;
        }
        if self.stopped {
            return; // text after the stop string, and the upstream's own finish
        }
        let Some(choice) = chunk.choices.first_mut() else {
            self.out.push_back(Ok(chunk));
            return;
        };
        let finish = choice.finish_reason.take();
        if let Some(text) = choice.delta.content.take() {
            if self.template.is_none() {
                let mut t = chunk.clone();
                t.choices.truncate(1);
                self.template = Some(t);
            }
            self.held.push_str(&text);
            if let Some(cut) = first_match(&self.held, &self.stops) {
                let before: String = self.held[..cut].to_owned();
                self.held.clear();
                if !before.is_empty() {
                    if let Some(c) = self.text_chunk(before) {
                        self.out.push_back(Ok(c));
                    }
                }
                self.stopped = true;
                let mut fin = chunk;
                if let Some(choice) = fin.choices.first_mut() {
                    choice.delta = Delta::default();
                    choice.finish_reason = Some(finish_reason::STOP.to_owned());
                }
                self.out.push_back(Ok(fin));
                return;
            }
            // Emit all but the tail that could still begin a stop string.
            let mut safe = self.held.len().saturating_sub(self.hold);
            while safe > 0 && !self.held.is_char_boundary(safe) {
                safe -= 1;
            }
            if safe > 0 {
                let rest = self.held.split_off(safe);
                let emit = std::mem::replace(&mut self.held, rest);
                if let Some(c) = self.text_chunk(emit) {
                    self.out.push_back(Ok(c));
                }
            }
        }
        let has_other = {
            let d = &chunk.choices[0].delta;
            d.role.is_some() || d.tool_calls.is_some() || d.reasoning_content.is_some()
        };
        if finish.is_some() {
            self.flush_all();
            chunk.choices[0].finish_reason = finish;
            self.out.push_back(Ok(chunk));
        } else if has_other {
            self.out.push_back(Ok(chunk));
        }
    }

    fn flush_all(&mut self) {
        if !self.held.is_empty() && !self.stopped {
            let text = std::mem::take(&mut self.held);
            if let Some(c) = self.text_chunk(text) {
                self.out.push_back(Ok(c));
            }
        }
    }
}

impl Stream for StopAtSequences {
    type Item = Result<ChatChunk, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Poll::Ready(Some(item));
            }
            match std::task::ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(chunk)) => self.accept(chunk),
                Some(Err(e)) => {
                    self.flush_all();
                    self.out.push_back(Err(e));
                }
                None => {
                    self.flush_all();
                    return match self.out.pop_front() {
                        Some(item) => Poll::Ready(Some(item)),
                        None => Poll::Ready(None),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, Usage};
    use futures_util::StreamExt;

    fn run(pieces: &[&str], stops: &[&str]) -> (String, Vec<Option<String>>, bool) {
        let meta = ChunkMeta::new("amazon.titan-text-express-v1");
        let mut items = vec![Ok(ChatChunk::delta(&meta, Delta::role(), None))];
        for p in pieces {
            items.push(Ok(ChatChunk::delta(&meta, Delta::text(*p), None)));
        }
        items.push(Ok(ChatChunk::delta(
            &meta,
            Delta::default(),
            Some("length"),
        )));
        items.push(Ok(ChatChunk::usage(&meta, Usage::from_parts(3, 4, 0, 0))));
        let stream = stop_at_sequences(
            ChunkStream::from_chunks(items),
            stops.iter().map(|s| s.to_string()).collect(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out: Vec<ChatChunk> = rt.block_on(stream.map(|r| r.unwrap()).collect());
        let text = out
            .iter()
            .filter_map(|c| c.choices.first()?.delta.content.clone())
            .collect::<String>();
        let finishes = out
            .iter()
            .filter_map(|c| c.choices.first())
            .map(|c| c.finish_reason.clone())
            .filter(Option::is_some)
            .collect();
        (
            text,
            finishes,
            out.last().is_some_and(ChatChunk::is_usage_only),
        )
    }

    #[test]
    fn cuts_at_a_stop_spanning_chunks() {
        let (text, finishes, usage_last) = run(&["Hello wo", "rld\n", "\nmore text"], &["\n\n"]);
        assert_eq!(text, "Hello world");
        assert_eq!(finishes, [Some("stop".to_owned())]);
        assert!(usage_last, "the usage chunk still ends the stream");
    }

    #[test]
    fn without_a_match_everything_passes_in_order() {
        let (text, finishes, _) = run(&["Soft ", "rain ", "falls"], &["###"]);
        assert_eq!(text, "Soft rain falls");
        assert_eq!(finishes, [Some("length".to_owned())]);
    }

    #[test]
    fn multibyte_text_is_never_split_inside_a_character() {
        let (text, _, _) = run(&["héllo ", "wörld", " é"], &["é!"]);
        assert_eq!(text, "héllo wörld é");
    }

    #[test]
    fn complete_replies_are_cut_too() {
        let meta = ChunkMeta::new("m");
        let mut r = ChatResponse::new(
            &meta,
            crate::model::ResponseMessage::assistant(Some("one\n\ntwo".into()), None),
            "length",
            None,
        );
        truncate_complete(&mut r, &["\n\n".to_owned()]);
        assert_eq!(r.choices[0].message.content.as_deref(), Some("one"));
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    }
}
