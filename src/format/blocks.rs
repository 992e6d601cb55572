//! [`BlockSequencer`]: canonical deltas → content blocks, for the client formats that stream in
//! blocks (Anthropic Messages and ConverseStream).
//!
//! An OpenAI stream switches freely between reasoning, text and tool calls from one chunk to the
//! next; block formats need each run of one kind in its own block, opened and closed in order,
//! with indexes counting up from 0. Both block encoders take their block structure from here and
//! only spell the events in their own format.
//!
//! Tool-call deltas are expected one call after another (as OpenAI and Bedrock send them): a
//! fragment of a call whose block was already closed starts a new block.
//!
//! Signed reasoning arrives as `thinking_blocks` deltas: a thinking block's `signature` ends that
//! block (reasoning after it opens a new one, as Claude writes consecutive thinking blocks), and a
//! redacted block is a block of its own, opened and closed at once.

use crate::model::{Delta, ThinkingBlock};

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind<'a> {
    /// Reasoning text.
    Thinking,
    /// Encrypted reasoning, whole: the block carries its `data` and closes at once.
    RedactedThinking { data: &'a str },
    /// Answer text (content or refusal).
    Text,
    /// A tool call: the OpenAI tool-call index, its id and name (from the call's first fragment).
    ToolUse {
        call: u32,
        id: Option<&'a str>,
        name: &'a str,
    },
}

/// One step of the block structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockEvent<'a> {
    /// A block opens at `index`.
    Start { index: u32, kind: BlockKind<'a> },
    /// Reasoning text for the open block.
    Thinking { index: u32, text: &'a str },
    /// The signature of the open thinking block (the block closes after it).
    Signature { index: u32, signature: &'a str },
    /// Answer text for the open block.
    Text { index: u32, text: &'a str },
    /// A piece of a tool call's JSON arguments for the open block.
    InputJson { index: u32, json: &'a str },
    /// The block at `index` closes.
    Stop { index: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    /// A thinking block whose signature went out: reasoning after it opens a new block.
    Signed,
    Redacted,
    Text,
    Tool(u32),
}

/// Tracks the open block and the next index of one stream.
#[derive(Debug, Default)]
pub(crate) struct BlockSequencer {
    open: Option<Open>,
    next_index: u32,
}

impl BlockSequencer {
    /// Emits the block events for one delta, in order: reasoning, signed-reasoning pieces, text,
    /// tool-call fragments.
    pub(crate) fn delta<'a>(&mut self, delta: &'a Delta, emit: &mut impl FnMut(BlockEvent<'a>)) {
        if let Some(text) = delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
            let index = self.ensure(Open::Thinking, BlockKind::Thinking, emit);
            emit(BlockEvent::Thinking { index, text });
        }
        for block in delta.thinking_blocks.iter().flatten() {
            match block {
                ThinkingBlock::Thinking {
                    thinking,
                    signature,
                } => {
                    if !thinking.is_empty() {
                        let index = self.ensure(Open::Thinking, BlockKind::Thinking, emit);
                        emit(BlockEvent::Thinking {
                            index,
                            text: thinking,
                        });
                    }
                    if let Some(signature) = signature.as_deref().filter(|s| !s.is_empty()) {
                        let index = self.ensure(Open::Thinking, BlockKind::Thinking, emit);
                        emit(BlockEvent::Signature { index, signature });
                        self.open = Some(Open::Signed);
                    }
                }
                ThinkingBlock::RedactedThinking { data } => {
                    // A redacted block is always a block of its own.
                    self.close(emit);
                    self.ensure(Open::Redacted, BlockKind::RedactedThinking { data }, emit);
                    self.close(emit);
                }
            }
        }
        for text in [delta.content.as_deref(), delta.refusal.as_deref()]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
        {
            let index = self.ensure(Open::Text, BlockKind::Text, emit);
            emit(BlockEvent::Text { index, text });
        }
        for call in delta.tool_calls.iter().flatten() {
            let function = call.function.as_ref();
            let kind = BlockKind::ToolUse {
                call: call.index,
                id: call.id.as_deref(),
                name: function.and_then(|f| f.name.as_deref()).unwrap_or_default(),
            };
            let index = self.ensure(Open::Tool(call.index), kind, emit);
            if let Some(json) = function
                .and_then(|f| f.arguments.as_deref())
                .filter(|a| !a.is_empty())
            {
                emit(BlockEvent::InputJson { index, json });
            }
        }
    }

    /// Closes the open block, if any.
    pub(crate) fn close<'a>(&mut self, emit: &mut impl FnMut(BlockEvent<'a>)) {
        if self.open.take().is_some() {
            emit(BlockEvent::Stop {
                index: self.next_index - 1,
            });
        }
    }

    /// Makes `open` the open block (closing another first); returns its index.
    fn ensure<'a>(
        &mut self,
        open: Open,
        kind: BlockKind<'a>,
        emit: &mut impl FnMut(BlockEvent<'a>),
    ) -> u32 {
        if self.open != Some(open) {
            self.close(emit);
            self.open = Some(open);
            self.next_index += 1;
            emit(BlockEvent::Start {
                index: self.next_index - 1,
                kind,
            });
        }
        self.next_index - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ToolCallDelta;

    #[test]
    fn kinds_switch_blocks_and_indexes_count_up() {
        let mut seq = BlockSequencer::default();
        let mut events = Vec::new();
        let signed = |sig: &str| Delta {
            thinking_blocks: Some(vec![ThinkingBlock::Thinking {
                thinking: String::new(),
                signature: Some(sig.into()),
            }]),
            ..Delta::default()
        };
        let deltas = [
            Delta {
                reasoning_content: Some("hmm".into()),
                ..Delta::default()
            },
            signed("s1"),
            Delta {
                reasoning_content: Some("more".into()),
                ..Delta::default()
            },
            signed("s2"),
            Delta {
                thinking_blocks: Some(vec![ThinkingBlock::RedactedThinking { data: "enc".into() }]),
                ..Delta::default()
            },
            Delta::text("a"),
            Delta::text("b"),
            Delta::tool_call(ToolCallDelta::start(0, "c1", "f")),
            Delta::tool_call(ToolCallDelta::arguments(0, "{}")),
            Delta::tool_call(ToolCallDelta::start(1, "c2", "g")),
        ];
        for d in &deltas {
            seq.delta(d, &mut |e| events.push(format!("{e:?}")));
        }
        seq.close(&mut |e| events.push(format!("{e:?}")));
        seq.close(&mut |e| events.push(format!("{e:?}")));
        assert_eq!(
            events,
            [
                "Start { index: 0, kind: Thinking }",
                "Thinking { index: 0, text: \"hmm\" }",
                "Signature { index: 0, signature: \"s1\" }",
                "Stop { index: 0 }",
                "Start { index: 1, kind: Thinking }",
                "Thinking { index: 1, text: \"more\" }",
                "Signature { index: 1, signature: \"s2\" }",
                "Stop { index: 1 }",
                "Start { index: 2, kind: RedactedThinking { data: \"enc\" } }",
                "Stop { index: 2 }",
                "Start { index: 3, kind: Text }",
                "Text { index: 3, text: \"a\" }",
                "Text { index: 3, text: \"b\" }",
                "Stop { index: 3 }",
                "Start { index: 4, kind: ToolUse { call: 0, id: Some(\"c1\"), name: \"f\" } }",
                "InputJson { index: 4, json: \"{}\" }",
                "Stop { index: 4 }",
                "Start { index: 5, kind: ToolUse { call: 1, id: Some(\"c2\"), name: \"g\" } }",
                "Stop { index: 5 }",
            ]
        );
    }
}
