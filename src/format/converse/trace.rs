//! A Converse guardrail trace (SDK types) as the JSON Bedrock writes on the wire
//! (`trace.guardrail`, the `amazon-bedrock-trace.guardrail` of InvokeModel replies).
//!
//! Covered: model output, the action reason, and every policy's findings (topics, content filters,
//! words, sensitive information, contextual grounding) of the input and output assessments.
//! Automated-reasoning findings, invocation metrics and applied-guardrail details are left out:
//! their SDK shapes are deep unions a client has not asked the gateway for.

use aws_sdk_bedrockruntime::types::{GuardrailAssessment, GuardrailTraceAssessment};
use serde_json::{json, Map, Value};

/// The trace as wire JSON.
pub(crate) fn guardrail_trace_json(trace: &GuardrailTraceAssessment) -> Value {
    let mut out = Map::new();
    if !trace.model_output().is_empty() {
        out.insert("modelOutput".into(), json!(trace.model_output()));
    }
    if let Some(reason) = trace.action_reason() {
        out.insert("actionReason".into(), json!(reason));
    }
    if let Some(input) = trace.input_assessment() {
        let map: Map<String, Value> = input
            .iter()
            .map(|(id, a)| (id.clone(), assessment(a)))
            .collect();
        out.insert("inputAssessment".into(), Value::Object(map));
    }
    if let Some(output) = trace.output_assessments() {
        let map: Map<String, Value> = output
            .iter()
            .map(|(id, list)| (id.clone(), list.iter().map(assessment).collect()))
            .collect();
        out.insert("outputAssessments".into(), Value::Object(map));
    }
    Value::Object(out)
}

fn assessment(a: &GuardrailAssessment) -> Value {
    let mut out = Map::new();
    if let Some(p) = a.topic_policy() {
        let topics: Vec<Value> = p
            .topics()
            .iter()
            .map(|t| json!({"name": t.name(), "type": t.r#type().as_str(), "action": t.action().as_str(), "detected": t.detected()}))
            .collect();
        out.insert("topicPolicy".into(), json!({"topics": topics}));
    }
    if let Some(p) = a.content_policy() {
        let filters: Vec<Value> = p
            .filters()
            .iter()
            .map(|f| {
                json!({"type": f.r#type().as_str(), "confidence": f.confidence().as_str(),
                    "filterStrength": f.filter_strength().map(|s| s.as_str()),
                    "action": f.action().as_str(), "detected": f.detected()})
            })
            .collect();
        out.insert("contentPolicy".into(), json!({"filters": filters}));
    }
    if let Some(p) = a.word_policy() {
        let custom: Vec<Value> = p
            .custom_words()
            .iter()
            .map(|w| json!({"match": w.r#match(), "action": w.action().as_str(), "detected": w.detected()}))
            .collect();
        let managed: Vec<Value> = p
            .managed_word_lists()
            .iter()
            .map(|w| json!({"match": w.r#match(), "type": w.r#type().as_str(), "action": w.action().as_str(), "detected": w.detected()}))
            .collect();
        out.insert(
            "wordPolicy".into(),
            json!({"customWords": custom, "managedWordLists": managed}),
        );
    }
    if let Some(p) = a.sensitive_information_policy() {
        let pii: Vec<Value> = p
            .pii_entities()
            .iter()
            .map(|e| json!({"match": e.r#match(), "type": e.r#type().as_str(), "action": e.action().as_str(), "detected": e.detected()}))
            .collect();
        let regexes: Vec<Value> = p
            .regexes()
            .iter()
            .map(|r| json!({"name": r.name(), "match": r.r#match(), "regex": r.regex(), "action": r.action().as_str(), "detected": r.detected()}))
            .collect();
        out.insert(
            "sensitiveInformationPolicy".into(),
            json!({"piiEntities": pii, "regexes": regexes}),
        );
    }
    if let Some(p) = a.contextual_grounding_policy() {
        let filters: Vec<Value> = p
            .filters()
            .iter()
            .map(|f| json!({"type": f.r#type().as_str(), "threshold": f.threshold(), "score": f.score(), "action": f.action().as_str(), "detected": f.detected()}))
            .collect();
        out.insert(
            "contextualGroundingPolicy".into(),
            json!({"filters": filters}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::{
        GuardrailTopic, GuardrailTopicPolicyAction, GuardrailTopicPolicyAssessment,
        GuardrailTopicType,
    };

    #[test]
    fn topics_and_reason() {
        let topic = GuardrailTopic::builder()
            .name("Finance")
            .r#type(GuardrailTopicType::Deny)
            .action(GuardrailTopicPolicyAction::Blocked)
            .detected(true)
            .build()
            .unwrap();
        let a = GuardrailAssessment::builder()
            .topic_policy(
                GuardrailTopicPolicyAssessment::builder()
                    .topics(topic)
                    .build()
                    .unwrap(),
            )
            .build();
        let trace = GuardrailTraceAssessment::builder()
            .input_assessment("gr-1", a)
            .action_reason("Guardrail blocked.")
            .build();
        assert_eq!(
            guardrail_trace_json(&trace),
            json!({"actionReason": "Guardrail blocked.", "inputAssessment": {"gr-1": {"topicPolicy": {"topics": [
                {"name": "Finance", "type": "DENY", "action": "BLOCKED", "detected": true}]}}}})
        );
    }
}
