//! `GET /v1/models` entries from Bedrock's control plane: foundation models with text output that
//! can be invoked on demand, and the system-defined (cross-region) inference profiles.

use aws_sdk_bedrock::types::{InferenceProfileType, InferenceType, ModelModality};

use crate::error::GatewayError;
use crate::model::ModelObject;

fn control_error<E: std::error::Error>(what: &str, e: E) -> GatewayError {
    GatewayError::upstream_connect(format!(
        "Bedrock {what} failed: {}",
        crate::error::scrub_aws_identifiers(&crate::error::error_chain(&e))
    ))
}

fn vendor_of(id: &str) -> String {
    let mut parts = id.split('.');
    let first = parts.next().unwrap_or("bedrock");
    if ["us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"].contains(&first) {
        parts.next().unwrap_or(first).to_owned()
    } else {
        first.to_owned()
    }
}

/// Lists models through `control` (ListFoundationModels + paginated ListInferenceProfiles).
pub(crate) async fn list_models_with(
    control: &aws_sdk_bedrock::Client,
) -> Result<Vec<ModelObject>, GatewayError> {
    let fm = control
        .list_foundation_models()
        .by_output_modality(ModelModality::Text)
        .send()
        .await
        .map_err(|e| control_error("ListFoundationModels", e))?;
    let mut out = Vec::new();
    for m in fm.model_summaries() {
        let on_demand = m
            .inference_types_supported()
            .contains(&InferenceType::OnDemand);
        if !on_demand {
            continue;
        }
        let created = m
            .model_lifecycle()
            .and_then(|l| l.start_of_life_time())
            .map(|t| u64::try_from(t.secs()).unwrap_or(0))
            .unwrap_or(0);
        out.push(ModelObject {
            id: m.model_id().to_owned(),
            object: "model".into(),
            created,
            owned_by: m
                .provider_name()
                .map(str::to_ascii_lowercase)
                .unwrap_or_else(|| vendor_of(m.model_id())),
        });
    }
    let mut pages = control
        .list_inference_profiles()
        .type_equals(InferenceProfileType::SystemDefined)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| control_error("ListInferenceProfiles", e))?;
        for p in page.inference_profile_summaries() {
            let created = p
                .created_at()
                .map(|t| u64::try_from(t.secs()).unwrap_or(0))
                .unwrap_or(0);
            out.push(ModelObject {
                id: p.inference_profile_id().to_owned(),
                object: "model".into(),
                created,
                owned_by: vendor_of(p.inference_profile_id()),
            });
        }
    }
    Ok(out)
}
