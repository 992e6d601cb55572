//! Bedrock guardrails: which guardrail a call gets, and its spelling per operation.
//!
//! A call gets the client's own guardrail when the request names one (InvokeModel's guardrail
//! headers, Converse's `guardrailConfig`, the OpenAI-body extension) and the configuration allows
//! clients to (`guardrails.allow_client`; otherwise that request is a 400), else the configured
//! guardrail of its model or route (`[[guardrails.models]]`), else none. It goes out as the
//! InvokeModel guardrail headers (with `X-Amzn-Bedrock-Trace`) or as Converse's `guardrailConfig`
//! (`GuardrailStreamConfiguration` on ConverseStream). An intervention comes back as
//! `finish_reason: "content_filter"` with the trace, when asked for, in the reply (the codecs).

use aws_sdk_bedrockruntime::types::{
    GuardrailConfiguration, GuardrailStreamConfiguration, GuardrailStreamProcessingMode,
    GuardrailTrace, Trace,
};

use crate::config::GuardrailsConfig;
use crate::error::GatewayError;
use crate::model::{ChatRequest, GuardrailConfig};

/// The guardrail a call of `req`, sent to `upstream`, gets.
pub(crate) fn effective(
    req: &ChatRequest,
    upstream: &str,
    config: &GuardrailsConfig,
) -> Result<Option<GuardrailConfig>, GatewayError> {
    if let Some(own) = &req.guardrail_config {
        if !config.allow_client {
            return Err(GatewayError::invalid_request(
                "This gateway does not let clients choose a guardrail per request (guardrails.allow_client).",
            )
            .with_param("guardrailConfig")
            .with_code("unsupported_parameter"));
        }
        let trace_ok = own
            .trace
            .as_deref()
            .is_none_or(|t| matches!(t, "enabled" | "disabled" | "enabled_full"));
        if own.guardrail_identifier.is_empty() || own.guardrail_version.is_empty() || !trace_ok {
            return Err(GatewayError::invalid_request(
                "guardrailConfig needs guardrailIdentifier and guardrailVersion; trace is enabled, disabled or enabled_full.",
            )
            .with_param("guardrailConfig"));
        }
        return Ok(Some(own.clone()));
    }
    Ok(config
        .models
        .iter()
        .find(|r| req.model.starts_with(&r.prefix) || upstream.starts_with(&r.prefix))
        .map(|r| GuardrailConfig {
            guardrail_identifier: r.identifier.clone(),
            guardrail_version: r.version.clone(),
            trace: r.trace.clone(),
            stream_processing_mode: None,
        }))
}

/// InvokeModel's `X-Amzn-Bedrock-Trace` for a guardrail's `trace`.
pub(crate) fn invoke_trace(g: &GuardrailConfig) -> Option<Trace> {
    g.trace
        .as_deref()
        .map(|t| Trace::from(t.to_ascii_uppercase().as_str()))
}

/// Whether the guardrail's reply carries its trace (`enabled`, `enabled_full`).
pub(crate) fn traced(g: &GuardrailConfig) -> bool {
    g.trace.as_deref().is_some_and(|t| t != "disabled")
}

/// Converse's `guardrailConfig`.
pub(crate) fn converse(g: &GuardrailConfig) -> GuardrailConfiguration {
    GuardrailConfiguration::builder()
        .guardrail_identifier(&g.guardrail_identifier)
        .guardrail_version(&g.guardrail_version)
        .set_trace(g.trace.as_deref().map(GuardrailTrace::from))
        .build()
}

/// ConverseStream's `guardrailConfig`.
pub(crate) fn converse_stream(g: &GuardrailConfig) -> GuardrailStreamConfiguration {
    GuardrailStreamConfiguration::builder()
        .guardrail_identifier(&g.guardrail_identifier)
        .guardrail_version(&g.guardrail_version)
        .set_trace(g.trace.as_deref().map(GuardrailTrace::from))
        .set_stream_processing_mode(
            g.stream_processing_mode
                .as_deref()
                .map(GuardrailStreamProcessingMode::from),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GuardrailRule;

    fn config(allow_client: bool) -> GuardrailsConfig {
        GuardrailsConfig {
            allow_client,
            models: vec![GuardrailRule {
                prefix: "us.anthropic.".into(),
                identifier: "gr-1".into(),
                version: "2".into(),
                trace: Some("enabled".into()),
            }],
        }
    }

    #[test]
    fn client_guardrails_only_where_allowed_and_rules_by_prefix() {
        let mut req = ChatRequest {
            model: "claude".into(),
            ..ChatRequest::default()
        };
        let g = effective(&req, "us.anthropic.claude-x", &config(false))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                g.guardrail_identifier.as_str(),
                g.guardrail_version.as_str()
            ),
            ("gr-1", "2")
        );
        assert_eq!(invoke_trace(&g), Some(Trace::Enabled));
        assert!(effective(&req, "amazon.nova-pro-v1:0", &config(false))
            .unwrap()
            .is_none());
        req.guardrail_config = Some(GuardrailConfig {
            guardrail_identifier: "mine".into(),
            guardrail_version: "DRAFT".into(),
            trace: None,
            stream_processing_mode: None,
        });
        let e = effective(&req, "us.anthropic.claude-x", &config(false)).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some("guardrailConfig"))
        );
        let g = effective(&req, "us.anthropic.claude-x", &config(true))
            .unwrap()
            .unwrap();
        assert_eq!(g.guardrail_identifier, "mine");
        req.guardrail_config.as_mut().unwrap().trace = Some("loud".into());
        assert!(effective(&req, "x", &config(true)).is_err());
    }
}
