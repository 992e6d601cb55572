//! Reasoning requests: what a client asked for, in one shape for every upstream encoder.
//!
//! A client asks for reasoning with OpenAI's `reasoning_effort` (`minimal` … `high`), with an
//! Anthropic-style `thinking` object (`{"type":"enabled","budget_tokens":N}`, `adaptive`,
//! `disabled`; in an Anthropic body, or as an extension in an OpenAI body), or through Converse's
//! `additionalModelRequestFields`. [`requested`] reads the canonical request into a [`Reasoning`]:
//! the `thinking` object wins; an effort becomes a token budget through the configured
//! [`ReasoningBudgets`] table (and a budget becomes an effort, for upstreams that take one).
//!
//! ```
//! use open_bedrock_server::format::reasoning::{requested, Reasoning, ReasoningBudgets};
//! use open_bedrock_server::model::ChatRequest;
//!
//! let budgets = ReasoningBudgets::default();
//! let mut req = ChatRequest::default();
//! req.reasoning_effort = Some("medium".into());
//! assert_eq!(requested(&req, &budgets).unwrap(), Some(Reasoning::Budget(budgets.medium)));
//! assert_eq!(budgets.effort_for(budgets.medium), "medium");
//! req.reasoning_effort = Some("none".into());
//! assert_eq!(requested(&req, &budgets).unwrap(), None);
//! ```

use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use crate::model::ChatRequest;

/// The smallest thinking budget Claude accepts.
pub const MIN_THINKING_BUDGET: u32 = 1024;

/// `reasoning_effort` → thinking `budget_tokens` (`[reasoning.budget_tokens]` in the
/// configuration). `xhigh` and `max` use `high`'s budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ReasoningBudgets {
    /// Budget for `minimal`.
    pub minimal: u32,
    /// Budget for `low`.
    pub low: u32,
    /// Budget for `medium`.
    pub medium: u32,
    /// Budget for `high` (and `xhigh`, `max`).
    pub high: u32,
}

impl Default for ReasoningBudgets {
    fn default() -> Self {
        ReasoningBudgets {
            minimal: 1024,
            low: 2048,
            medium: 8192,
            high: 16384,
        }
    }
}

impl ReasoningBudgets {
    /// A table with the given budgets.
    pub fn new(minimal: u32, low: u32, medium: u32, high: u32) -> Self {
        ReasoningBudgets {
            minimal,
            low,
            medium,
            high,
        }
    }

    /// The budget for an effort; `None` for `none`; a 400 naming `reasoning_effort` for a value
    /// OpenAI does not define.
    pub fn budget(&self, effort: &str) -> Result<Option<u32>, GatewayError> {
        Ok(Some(match effort {
            "none" => return Ok(None),
            "minimal" => self.minimal,
            "low" => self.low,
            "medium" => self.medium,
            "high" | "xhigh" | "max" => self.high,
            other => {
                return Err(GatewayError::invalid_request(format!(
                    "Unsupported value for 'reasoning_effort': '{other}'. Expected one of none, minimal, low, medium, high, xhigh, max."
                ))
                .with_param("reasoning_effort")
                .with_code("unsupported_value"))
            }
        }))
    }

    /// The effort whose budget is closest to `budget` from below (`minimal` below every budget).
    pub fn effort_for(&self, budget: u32) -> &'static str {
        [
            (self.high, "high"),
            (self.medium, "medium"),
            (self.low, "low"),
        ]
        .into_iter()
        .find(|(b, _)| budget >= *b)
        .map_or("minimal", |(_, e)| e)
    }

    /// Checks the table: budgets of at least [`MIN_THINKING_BUDGET`], growing with the effort.
    pub fn validate(&self) -> Result<(), String> {
        if self.minimal < MIN_THINKING_BUDGET {
            return Err(format!(
                "minimal must be at least {MIN_THINKING_BUDGET} (Claude's smallest thinking budget)"
            ));
        }
        if !(self.minimal <= self.low && self.low <= self.medium && self.medium <= self.high) {
            return Err("budgets must not shrink from minimal to high".into());
        }
        Ok(())
    }
}

/// The reasoning a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// Think with up to this many tokens.
    Budget(u32),
    /// Let the model choose its budget (`thinking: {"type":"adaptive"}`).
    Adaptive,
}

/// Where a request's reasoning setting came from, for error messages (`param`).
pub fn reasoning_param(req: &ChatRequest) -> &'static str {
    if req.thinking.is_some() {
        "thinking"
    } else {
        "reasoning_effort"
    }
}

/// The reasoning `req` asks for: its `thinking` object if it has one, else its
/// `reasoning_effort` through `budgets`; `None` when reasoning stays off.
pub fn requested(
    req: &ChatRequest,
    budgets: &ReasoningBudgets,
) -> Result<Option<Reasoning>, GatewayError> {
    if let Some(thinking) = &req.thinking {
        return match thinking.kind.as_str() {
            "disabled" => Ok(None),
            "adaptive" => Ok(Some(Reasoning::Adaptive)),
            "enabled" => {
                let budget = thinking.budget_tokens.ok_or_else(|| {
                    GatewayError::invalid_request(
                        "'thinking' of type 'enabled' needs 'budget_tokens'.",
                    )
                    .with_param("thinking.budget_tokens")
                })?;
                if budget < MIN_THINKING_BUDGET {
                    return Err(GatewayError::invalid_request(format!(
                        "'thinking.budget_tokens' must be at least {MIN_THINKING_BUDGET}."
                    ))
                    .with_param("thinking.budget_tokens")
                    .with_code("invalid_value"));
                }
                Ok(Some(Reasoning::Budget(budget)))
            }
            other => Err(GatewayError::invalid_request(format!(
                "Unsupported 'thinking' type '{other}': expected enabled, disabled or adaptive."
            ))
            .with_param("thinking")
            .with_code("invalid_value")),
        };
    }
    match req.reasoning_effort.as_deref() {
        None => Ok(None),
        Some(effort) => Ok(budgets.budget(effort)?.map(Reasoning::Budget)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ThinkingConfig;

    #[test]
    fn thinking_object_wins_and_is_checked() {
        let b = ReasoningBudgets::default();
        let mut req = ChatRequest {
            reasoning_effort: Some("high".into()),
            thinking: Some(ThinkingConfig::enabled(3000)),
            ..ChatRequest::default()
        };
        assert_eq!(requested(&req, &b).unwrap(), Some(Reasoning::Budget(3000)));
        assert_eq!(reasoning_param(&req), "thinking");
        req.thinking = Some(ThinkingConfig::enabled(10));
        assert_eq!(
            requested(&req, &b).unwrap_err().param(),
            Some("thinking.budget_tokens")
        );
        req.thinking.as_mut().unwrap().kind = "disabled".into();
        assert_eq!(requested(&req, &b).unwrap(), None);
        req.thinking.as_mut().unwrap().kind = "adaptive".into();
        assert_eq!(requested(&req, &b).unwrap(), Some(Reasoning::Adaptive));
        req.thinking.as_mut().unwrap().kind = "sometimes".into();
        assert_eq!(requested(&req, &b).unwrap_err().param(), Some("thinking"));
    }

    #[test]
    fn efforts_and_budgets_map_both_ways() {
        let b = ReasoningBudgets::new(1024, 2000, 5000, 9000);
        let req = |e: &str| ChatRequest {
            reasoning_effort: Some(e.into()),
            ..ChatRequest::default()
        };
        for (effort, budget) in [
            ("minimal", 1024),
            ("low", 2000),
            ("medium", 5000),
            ("high", 9000),
            ("xhigh", 9000),
        ] {
            assert_eq!(
                requested(&req(effort), &b).unwrap(),
                Some(Reasoning::Budget(budget))
            );
        }
        assert_eq!(
            requested(&req("huge"), &b).unwrap_err().param(),
            Some("reasoning_effort")
        );
        assert_eq!(b.effort_for(100), "minimal");
        assert_eq!(b.effort_for(4999), "low");
        assert_eq!(b.effort_for(60000), "high");
        assert!(b.validate().is_ok());
        assert!(ReasoningBudgets::new(100, 2000, 3000, 4000)
            .validate()
            .is_err());
        assert!(ReasoningBudgets::new(2000, 1500, 3000, 4000)
            .validate()
            .is_err());
    }
}
