//! Extended thinking for Claude (over InvokeModel, and over Converse where the model is Claude):
//! the `thinking` object, and the rules Claude puts on a request that thinks, checked here so a
//! client gets a clear 400 instead of Bedrock's.
//!
//! With thinking on, Claude wants:
//! - `budget_tokens` ≥ 1024 and below `max_tokens`: an effort's budget is cut to fit a client's
//!   token limit (OpenAI's `max_completion_tokens` counts reasoning too); an explicit budget that
//!   does not fit, or a limit too small to think in, is a 400. Without a client limit,
//!   `max_tokens` is the budget plus the configured default, so the answer keeps its room;
//! - no sampling override: `temperature` only 1, no `top_k`, `top_p` only within 0.95–1;
//! - a tool choice of `auto` or `none` (no forced tool);
//! - no assistant prefill;
//! - the last assistant turn, if it called tools, starting with its own thinking blocks (the
//!   signed `thinking_blocks` the client got with it).

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::format::reasoning::{
    reasoning_param, requested, Reasoning, ReasoningBudgets, MIN_THINKING_BUDGET,
};
use crate::model::{ChatRequest, Role, ToolChoiceKind};

/// What a request's reasoning becomes for Claude.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClaudeThinking {
    /// `max_tokens` to send (`None`: the client gave none and there is no default, e.g. Converse).
    pub(crate) max_tokens: Option<u32>,
    /// The `thinking` object; `None` when thinking stays off.
    pub(crate) thinking: Option<Value>,
}

fn invalid(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message.into())
        .with_param(param)
        .with_code("invalid_value")
}

/// Resolves the request's reasoning for Claude and checks Claude's rules for it.
/// `default_max_tokens` is what is sent when the client set no limit.
pub(crate) fn plan(
    req: &ChatRequest,
    default_max_tokens: Option<u32>,
    budgets: &ReasoningBudgets,
) -> Result<ClaudeThinking, GatewayError> {
    let client_max = req.max_output_tokens();
    let Some(reasoning) = requested(req, budgets)? else {
        return Ok(ClaudeThinking {
            max_tokens: client_max.or(default_max_tokens),
            thinking: None,
        });
    };
    let param = reasoning_param(req);
    let (max_tokens, thinking) = match reasoning {
        Reasoning::Adaptive => (
            client_max.or(default_max_tokens),
            json!({"type": "adaptive"}),
        ),
        Reasoning::Budget(budget) => {
            let (max_tokens, budget) = match client_max {
                Some(max) if max > budget => (Some(max), budget),
                // An effort's budget yields to the client's limit, as long as Claude can still think.
                Some(max) if param == "reasoning_effort" && max > MIN_THINKING_BUDGET => {
                    (Some(max), max - 1)
                }
                Some(max) => {
                    let what = if param == "thinking" {
                        format!("'thinking.budget_tokens' ({budget})")
                    } else {
                        format!("Claude's smallest thinking budget ({MIN_THINKING_BUDGET})")
                    };
                    return Err(invalid(
                        "max_tokens",
                        format!("The token limit ({max}) must be greater than {what} when thinking is on."),
                    ));
                }
                None => (default_max_tokens.map(|d| d.saturating_add(budget)), budget),
            };
            (
                max_tokens,
                json!({"type": "enabled", "budget_tokens": budget}),
            )
        }
    };
    check_sampling(req)?;
    check_tool_choice(req, param)?;
    check_history(req)?;
    Ok(ClaudeThinking {
        max_tokens,
        thinking: Some(thinking),
    })
}

fn check_sampling(req: &ChatRequest) -> Result<(), GatewayError> {
    if let Some(t) = req.temperature.filter(|t| *t != 1.0) {
        return Err(invalid(
            "temperature",
            format!(
                "Claude only accepts temperature 1 when thinking is on (got {t}); leave it unset."
            ),
        ));
    }
    if req.extra.get("top_k").is_some_and(|k| !k.is_null()) {
        return Err(invalid(
            "top_k",
            "Claude does not accept top_k when thinking is on; leave it unset.",
        ));
    }
    if let Some(p) = req.top_p.filter(|p| !(0.95..=1.0).contains(p)) {
        return Err(invalid(
            "top_p",
            format!("Claude only accepts top_p between 0.95 and 1 when thinking is on (got {p})."),
        ));
    }
    Ok(())
}

fn check_tool_choice(req: &ChatRequest, param: &'static str) -> Result<(), GatewayError> {
    let forced = req.tools.as_ref().is_some_and(|t| !t.is_empty())
        && matches!(
            req.tool_choice.as_ref().and_then(|c| c.kind()),
            Some(ToolChoiceKind::Required | ToolChoiceKind::Function(_))
        );
    if forced {
        return Err(GatewayError::unsupported(
            "tool_choice",
            format!(
                "Claude models cannot force a tool call (tool_choice 'required' or a named function) while {param} \
                 turns extended thinking on."
            ),
        ));
    }
    Ok(())
}

fn check_history(req: &ChatRequest) -> Result<(), GatewayError> {
    let last_turn = req
        .messages
        .iter()
        .rev()
        .find(|m| !matches!(m.role, Role::System | Role::Developer));
    if last_turn.is_some_and(|m| m.role == Role::Assistant) {
        return Err(invalid(
            "messages",
            "Claude does not continue a prefilled assistant turn when thinking is on: end the conversation with a user turn.",
        ));
    }
    let last_assistant = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant);
    if let Some(m) = last_assistant {
        let calls_tools = m.tool_calls.as_ref().is_some_and(|c| !c.is_empty())
            || m.extra.get("function_call").is_some_and(Value::is_object);
        let has_thinking = m.thinking_blocks.as_ref().is_some_and(|b| !b.is_empty());
        if calls_tools && !has_thinking {
            return Err(invalid(
                "messages",
                "With thinking on, the last assistant turn's tool calls must come with the thinking blocks Claude \
                 wrote before them: send the reply's thinking_blocks (with their signatures) back on that turn.",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn plan_of(v: Value) -> Result<ClaudeThinking, GatewayError> {
        plan(&req(v), Some(4096), &ReasoningBudgets::default())
    }

    #[test]
    fn off_keeps_the_limits() {
        let p = plan_of(json!({"model":"m","messages":[],"temperature":0.2})).unwrap();
        assert_eq!(
            p,
            ClaudeThinking {
                max_tokens: Some(4096),
                thinking: None
            }
        );
    }

    #[test]
    fn budgets_fit_the_token_limit() {
        let user = json!([{"role":"user","content":"hi"}]);
        let p = plan_of(json!({"model":"m","messages":user,"reasoning_effort":"low"})).unwrap();
        assert_eq!(p.max_tokens, Some(4096 + 2048));
        assert_eq!(
            p.thinking,
            Some(json!({"type":"enabled","budget_tokens":2048}))
        );
        let p = plan_of(
            json!({"model":"m","messages":user,"reasoning_effort":"high","max_tokens":5000}),
        )
        .unwrap();
        assert_eq!(
            (p.max_tokens, p.thinking.unwrap()["budget_tokens"].clone()),
            (Some(5000), json!(4999))
        );
        let e = plan_of(
            json!({"model":"m","messages":user,"reasoning_effort":"low","max_tokens":1000}),
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("max_tokens"));
        let e = plan_of(json!({"model":"m","messages":user,"thinking":{"type":"enabled","budget_tokens":3000},"max_tokens":3000})).unwrap_err();
        assert_eq!(e.param(), Some("max_tokens"));
        let p =
            plan_of(json!({"model":"m","messages":user,"thinking":{"type":"adaptive"}})).unwrap();
        assert_eq!(p.thinking, Some(json!({"type":"adaptive"})));
        let p = plan(
            &req(json!({"model":"m","messages":user,"reasoning_effort":"low"})),
            None,
            &ReasoningBudgets::default(),
        )
        .unwrap();
        assert_eq!(p.max_tokens, None);
    }

    #[test]
    fn sampling_tool_choice_and_history_rules() {
        let user = json!([{"role":"user","content":"hi"}]);
        for (extra, param) in [
            (json!({"temperature":0.5}), "temperature"),
            (json!({"top_k":5}), "top_k"),
            (json!({"top_p":0.5}), "top_p"),
            (
                json!({"tool_choice":"required","tools":[{"type":"function","function":{"name":"f"}}]}),
                "tool_choice",
            ),
        ] {
            let mut body = json!({"model":"m","messages":user,"reasoning_effort":"low"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            assert_eq!(plan_of(body).unwrap_err().param(), Some(param));
        }
        assert!(plan_of(json!({"model":"m","messages":user,"reasoning_effort":"low","temperature":1,"top_p":0.97})).is_ok());
        let prefill = json!([{"role":"user","content":"hi"},{"role":"assistant","content":"{"}]);
        assert_eq!(
            plan_of(json!({"model":"m","messages":prefill,"reasoning_effort":"low"}))
                .unwrap_err()
                .param(),
            Some("messages")
        );
        let unsigned_tool_turn = json!([{"role":"user","content":"hi"},
            {"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c","content":"ok"}]);
        let e =
            plan_of(json!({"model":"m","messages":unsigned_tool_turn,"reasoning_effort":"low"}))
                .unwrap_err();
        assert!(e.message().contains("thinking_blocks"), "{}", e.message());
        let mut signed = unsigned_tool_turn.clone();
        signed[1]["thinking_blocks"] = json!([{"type":"thinking","thinking":"t","signature":"s"}]);
        assert!(plan_of(json!({"model":"m","messages":signed,"reasoning_effort":"low"})).is_ok());
    }
}
