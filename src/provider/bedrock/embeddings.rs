//! Embeddings on Bedrock: Titan and Cohere over InvokeModel.
//!
//! Titan embeds one text per call, so a list is fanned out: at most
//! `bedrock.embedding_concurrency` calls at a time, the vectors reassembled in input order.
//! Cohere takes batches of at most [`COHERE_MAX_BATCH`] texts, sent the same way. Any call's
//! error fails the request (the retry layer above may try the whole request again). Usage is the
//! sum of the calls' input tokens: Titan's `inputTextTokenCount`, Cohere's
//! `X-Amzn-Bedrock-Input-Token-Count` header unless the body has a count. The calls go through
//! the gateway's own InvokeModel client when the provider has one (`super::direct`), else the
//! SDK's, where an interceptor reads that header (the SDK's output type does not carry it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use super::clients::Runtime;
use super::{error, request_id_hook, upstream_request_id};
use crate::error::GatewayError;
use crate::format::embeddings::{self, EmbeddingModel, COHERE_MAX_BATCH};
use crate::model::{EmbeddingsCall, EmbeddingsResponse};
use crate::route::BedrockFamily;

/// Answers an embeddings call routed to a Bedrock embedding family.
pub(super) async fn embed(
    client: &Runtime,
    family: BedrockFamily,
    call: &EmbeddingsCall,
    concurrency: usize,
) -> Result<EmbeddingsResponse, GatewayError> {
    let upstream = call.upstream_model();
    let model = EmbeddingModel::of(upstream).unwrap_or(match family {
        BedrockFamily::CohereEmbedding => EmbeddingModel::CohereV3,
        _ => EmbeddingModel::TitanV2,
    });
    let request = &*call.request;
    model.check(request)?;
    let rid = upstream_request_id(&call.context);
    let texts = request.texts();
    let concurrency = concurrency.max(1);
    // Each call owns what it sends (a cheap client clone, its body), so the futures are `Send`
    // without borrowing across the fan-out.
    let calls: Vec<_> = if model.one_text_per_call() {
        texts
            .iter()
            .map(|text| (embeddings::titan_body(model, request, text), 1))
            .collect()
    } else {
        texts
            .chunks(COHERE_MAX_BATCH)
            .map(|batch| (embeddings::cohere_body(model, request, batch), batch.len()))
            .collect()
    };
    let replies: Vec<(Vec<Vec<f32>>, u64)> = futures_util::stream::iter(calls)
        .map(|(body, count)| {
            let (client, upstream, rid) = (client.clone(), upstream.to_owned(), rid.clone());
            async move {
                let (bytes, header_tokens) = invoke(&client, &upstream, body, rid).await?;
                if model.one_text_per_call() {
                    let reply = embeddings::decode_titan_reply(bytes.as_ref())?;
                    Ok::<_, GatewayError>((vec![reply.embedding], reply.input_tokens))
                } else {
                    let reply = embeddings::decode_cohere_reply(bytes.as_ref(), count)?;
                    let tokens = reply.input_tokens.or(header_tokens).unwrap_or(0);
                    Ok((reply.embeddings, tokens))
                }
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let tokens = replies.iter().map(|(_, t)| t).sum();
    let vectors = replies.into_iter().flat_map(|(v, _)| v).collect();
    Ok(EmbeddingsResponse::new(&request.model, vectors, tokens))
}

/// One InvokeModel call: the body, and the input token count Bedrock put in its header.
async fn invoke(
    client: &Runtime,
    model: &str,
    body: Vec<u8>,
    rid: Option<String>,
) -> Result<(Bytes, Option<u64>), GatewayError> {
    if let Some(direct) = &client.direct {
        return direct.embed(model, Bytes::from(body), rid.as_deref()).await;
    }
    let client = &client.sdk;
    let tokens = InputTokens::default();
    let out = client
        .invoke_model()
        .model_id(model)
        .content_type("application/json")
        .accept("application/json")
        .body(Blob::new(body))
        .customize()
        .mutate_request(request_id_hook(rid))
        .interceptor(tokens.clone())
        .send()
        .await
        .map_err(error::from_sdk)?;
    Ok((Bytes::from(out.body.into_inner()), tokens.get()))
}

/// Reads `X-Amzn-Bedrock-Input-Token-Count` off an InvokeModel response.
#[derive(Debug, Clone, Default)]
struct InputTokens(Arc<AtomicU64>);

impl InputTokens {
    /// The count, once a response carried one.
    fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n - 1),
        }
    }
}

impl Intercept for InputTokens {
    fn name(&self) -> &'static str {
        "InputTokenCountHeader"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let count = context
            .response()
            .headers()
            .get("x-amzn-bedrock-input-token-count")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = count {
            // Stored plus one, so that 0 can mean "no header".
            self.0.store(n.saturating_add(1), Ordering::Relaxed);
        }
        Ok(())
    }
}
