//! The AWS SDK configuration and clients of one Bedrock provider, made when first used.
//!
//! Loading the AWS configuration builds the whole default credentials chain — an STS client for
//! web identity among it, whose HTTPS client reads and parses the system's root certificates —
//! and each SDK client runs its runtime plugins when built. Done at start-up, that kept about
//! 2 MiB resident in a gateway that might never call Bedrock (BENCHMARKS.md, idle RSS). So a
//! provider built from the configuration keeps only how to load: the configuration is loaded on
//! the first call that needs it (one load however many calls arrive together; a call that goes
//! away while it loads leaves the load to the next), and each client is built from it on its
//! first use. What can fail is read at start-up instead (the region, a Bedrock API key's file,
//! the retry settings, which aws-config would panic on while loading: the provider's
//! constructors), and credentials were already resolved on first use by the SDK. The first
//! Bedrock call pays the few milliseconds the load takes, on the worker that runs it.
//!
//! A provider given an SDK configuration that is already loaded ([`Clients::built`], for tests
//! and embedders) builds its clients at once, as before: the SDK panics on a configuration it
//! cannot use, and that belongs at construction, not in every request.
//!
//! On serving threads of their own (`server.threads`), each thread builds its own copy of a
//! runtime client on its first call ([`PerThread`]): a client built over a configuration without
//! an HTTP client of its own gets a connection pool of its own, so a thread's Bedrock calls and
//! their event streams go over connections its own runtime drives, as the OpenAI-compatible
//! provider's do (one shared pool's connections are each driven by the thread that opened them,
//! and a stream's events then cross threads). A configuration that carries an HTTP client (an
//! embedder's) shares it among the copies. Every client and copy shares one credentials cache
//! (the configuration's; one is added to a given configuration that has none). The control-plane
//! client (model listing) and the credential providers' own clients (STS, SSO, instance
//! metadata) stay one each.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_bedrockruntime::Client;
use tokio::sync::OnceCell;

use super::direct::{CredentialsCache, Direct, Invoker};
use crate::config::Secret;
use crate::server::PerThread;

/// Loads the SDK configuration: called on a provider's first call, and again only when a load
/// did not finish (its caller went away).
pub(super) type Load =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = SdkConfig> + Send>> + Send + Sync>;

/// The SDK configuration and the clients made from it, each when first used.
pub(super) struct Clients {
    load: Load,
    sdk: OnceCell<SdkConfig>,
    /// The runtime client of the provider's region (a copy per serving thread).
    primary: OnceLock<PerThread<Runtime>>,
    /// A runtime client per region of a configured ARN other than the provider's.
    regional: HashMap<String, OnceLock<PerThread<Runtime>>>,
    /// The control-plane client (model listing).
    control: OnceLock<aws_sdk_bedrock::Client>,
    /// The credentials the direct runtime clients of every region sign with (`None` when the
    /// configuration has no credentials provider).
    credentials: OnceLock<Option<Arc<CredentialsCache>>>,
    settings: RuntimeSettings,
}

/// One region's runtime clients on one serving thread: the SDK's, and the gateway's own
/// client (InvokeModel and Converse) when it can send for the SDK ([`super::direct`]).
#[derive(Clone)]
pub(super) struct Runtime {
    pub(super) sdk: Client,
    pub(super) direct: Option<Invoker>,
}

/// What a runtime client is built with besides the SDK configuration and its region.
#[derive(Clone)]
struct RuntimeSettings {
    connect: Duration,
    endpoint_url: Option<String>,
    api_key: Option<Secret>,
}

impl Clients {
    /// Clients over what `load` returns, with runtime clients for `regions` besides the primary
    /// one; `connect` is the runtime clients' connect timeout, `endpoint_url` their endpoint
    /// override, `api_key` the Bedrock API key they send instead of SigV4.
    pub(super) fn new(
        load: Load,
        regions: impl IntoIterator<Item = String>,
        connect: Duration,
        endpoint_url: Option<String>,
        api_key: Option<Secret>,
    ) -> Self {
        Clients {
            load,
            sdk: OnceCell::new(),
            primary: OnceLock::new(),
            regional: regions.into_iter().map(|r| (r, OnceLock::new())).collect(),
            control: OnceLock::new(),
            credentials: OnceLock::new(),
            settings: RuntimeSettings {
                connect,
                endpoint_url,
                api_key,
            },
        }
    }

    /// Clients over `sdk`, already loaded by the caller, each built now (see the module docs).
    pub(super) fn built(
        sdk: SdkConfig,
        regions: impl IntoIterator<Item = String>,
        connect: Duration,
        endpoint_url: Option<String>,
        api_key: Option<Secret>,
    ) -> Self {
        // One credentials cache for every client and per-thread copy: a configuration that
        // aws-config loaded has one; one built by hand would give each client its own, and each
        // serving thread would resolve credentials itself.
        let sdk = match sdk.identity_cache() {
            Some(_) => sdk,
            None => sdk
                .to_builder()
                .identity_cache(aws_sdk_bedrockruntime::config::IdentityCache::lazy().build())
                .build(),
        };
        let given = sdk.clone();
        let load: Load = Arc::new(move || {
            let sdk = given.clone();
            Box::pin(async move { sdk })
        });
        let mut clients = Clients::new(load, regions, connect, endpoint_url, api_key);
        clients.sdk = OnceCell::new_with(Some(sdk));
        if let Some(sdk) = clients.sdk.get() {
            clients.primary.get_or_init(|| clients.build(sdk, None));
            for (region, client) in &clients.regional {
                client.get_or_init(|| clients.build(sdk, Some(region)));
            }
            clients.control.get_or_init(|| control_client(sdk));
        }
        clients
    }

    /// The regions with a client of their own besides the primary one.
    pub(super) fn regions(&self) -> impl Iterator<Item = &str> {
        self.regional.keys().map(String::as_str)
    }

    /// The SDK configuration, if a call has loaded it.
    #[cfg(test)]
    pub(super) fn loaded(&self) -> Option<&SdkConfig> {
        self.sdk.get()
    }

    async fn sdk(&self) -> &SdkConfig {
        self.sdk.get_or_init(|| (self.load)()).await
    }

    /// The runtime client for `region` when it has one of its own, else the primary region's:
    /// this serving thread's copy on a serving thread (see the module docs).
    pub(super) async fn runtime(&self, region: Option<&str>) -> Runtime {
        let sdk = self.sdk().await;
        let clients = match region.and_then(|r| self.regional.get_key_value(r)) {
            Some((region, client)) => client.get_or_init(|| self.build(sdk, Some(region))),
            None => self.primary.get_or_init(|| self.build(sdk, None)),
        };
        clients.with(Runtime::clone)
    }

    /// The control-plane client, with two attempts.
    pub(super) async fn control(&self) -> &aws_sdk_bedrock::Client {
        let sdk = self.sdk().await;
        self.control.get_or_init(|| control_client(sdk))
    }

    /// The runtime clients for `region` (else the configuration's), built now, and by each
    /// serving thread for itself on its first use. The direct runtime client's endpoint and
    /// TLS roots are found once here; each thread gets its own connection pool over them.
    fn build(&self, sdk: &SdkConfig, region: Option<&str>) -> PerThread<Runtime> {
        let credentials = self.credentials.get_or_init(|| {
            sdk.credentials_provider()
                .map(|p| CredentialsCache::new(p, sdk.time_source()))
        });
        let direct = Direct::new(
            sdk,
            region,
            self.settings.endpoint_url.as_deref(),
            self.settings.api_key.as_ref().map(|k| k.expose()),
            self.settings.connect,
            credentials.as_ref(),
            &hyper_util::client::proxy::matcher::Matcher::from_env(),
        );
        let (settings, sdk, region) = (
            self.settings.clone(),
            sdk.clone(),
            region.map(str::to_owned),
        );
        PerThread::new(move || Runtime {
            sdk: settings.build(&sdk, region.as_deref()),
            direct: direct.as_ref().map(Direct::invoker),
        })
    }
}

impl RuntimeSettings {
    /// A runtime client, in `region` when given (else the configuration's): the SDK's retries and
    /// stalled-stream protection off (the gateway owns both), the connect timeout, the endpoint
    /// override and the Bedrock API key when configured.
    fn build(&self, sdk: &SdkConfig, region: Option<&str>) -> Client {
        use aws_sdk_bedrockruntime::config as rt;
        let mut b = rt::Builder::from(sdk)
            .retry_config(rt::retry::RetryConfig::disabled())
            .stalled_stream_protection(rt::StalledStreamProtectionConfig::disabled())
            .timeout_config(
                rt::timeout::TimeoutConfig::builder()
                    .connect_timeout(self.connect)
                    .build(),
            );
        if let Some(r) = region {
            b = b.region(rt::Region::new(r.to_owned()));
        }
        if let Some(url) = &self.endpoint_url {
            b = b.endpoint_url(url);
        }
        if let Some(key) = &self.api_key {
            b = b
                .bearer_token(rt::Token::new(key.expose(), None))
                .auth_scheme_preference([
                    aws_smithy_runtime_api::client::auth::AuthSchemeId::from("httpBearerAuth"),
                ]);
        }
        Client::from_conf(b.build())
    }
}

/// The control-plane client, with two attempts.
fn control_client(sdk: &SdkConfig) -> aws_sdk_bedrock::Client {
    aws_sdk_bedrock::Client::from_conf(
        aws_sdk_bedrock::config::Builder::from(sdk)
            .retry_config(
                aws_sdk_bedrock::config::retry::RetryConfig::standard().with_max_attempts(2),
            )
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_config::BehaviorVersion;

    use super::*;

    fn counted(loads: Arc<AtomicUsize>) -> Load {
        Arc::new(move || {
            let loads = loads.clone();
            Box::pin(async move {
                loads.fetch_add(1, Ordering::SeqCst);
                // A load that takes a while, so calls arriving together wait on the one load.
                tokio::time::sleep(Duration::from_millis(20)).await;
                SdkConfig::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(aws_config::Region::new("us-east-1"))
                    .build()
            })
        })
    }

    #[tokio::test]
    async fn loaded_once_on_first_use_and_each_client_built_in_its_region() {
        let loads = Arc::new(AtomicUsize::new(0));
        let clients = Clients::new(
            counted(loads.clone()),
            ["eu-west-1".to_owned()],
            Duration::from_secs(3),
            None,
            None,
        );
        assert_eq!(loads.load(Ordering::SeqCst), 0, "nothing loaded up front");
        assert!(clients.primary.get().is_none() && clients.control.get().is_none());

        // Calls arriving together share one load.
        let (a, b) = tokio::join!(clients.runtime(None), clients.runtime(None));
        assert!(
            std::ptr::eq(a.sdk.config(), b.sdk.config()),
            "one primary client"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(a.sdk.config().region().unwrap().as_ref(), "us-east-1");
        assert!(
            clients.regional["eu-west-1"].get().is_none(),
            "only the one used"
        );

        let regional = clients.runtime(Some("eu-west-1")).await;
        assert_eq!(
            regional.sdk.config().region().unwrap().as_ref(),
            "eu-west-1"
        );
        // A region without a client of its own gets the primary one.
        let fallback = clients.runtime(Some("ap-south-1")).await;
        assert!(std::ptr::eq(fallback.sdk.config(), a.sdk.config()));
        clients.control().await;
        assert_eq!(loads.load(Ordering::SeqCst), 1, "loaded once in all");
    }

    #[test]
    fn a_loaded_configuration_builds_every_client_at_once() {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let clients = Clients::built(
            sdk,
            ["eu-west-1".to_owned()],
            Duration::from_secs(3),
            None,
            None,
        );
        assert!(clients.loaded().is_some());
        assert!(clients.primary.get().is_some() && clients.control.get().is_some());
        let regional = clients.regional["eu-west-1"].get().expect("built at once");
        assert_eq!(
            regional.with(|c| c.sdk.config().region().unwrap().to_string()),
            "eu-west-1"
        );
    }

    #[tokio::test]
    async fn a_load_abandoned_midway_is_finished_by_the_next_call() {
        let loads = Arc::new(AtomicUsize::new(0));
        let clients = Clients::new(
            counted(loads.clone()),
            [],
            Duration::from_secs(3),
            None,
            None,
        );
        // The first caller goes away while the configuration loads.
        let gone = tokio::time::timeout(Duration::from_millis(1), clients.runtime(None)).await;
        assert!(gone.is_err());
        let client = tokio::time::timeout(Duration::from_secs(5), clients.runtime(None))
            .await
            .expect("the next call loads, not waits on the abandoned load");
        assert_eq!(client.sdk.config().region().unwrap().as_ref(), "us-east-1");
        assert_eq!(loads.load(Ordering::SeqCst), 2, "started again, not stuck");
    }

    /// A Bedrock runtime that answers every request `{}` over kept-alive connections, and the
    /// count of connections it accepted.
    async fn counting_runtime() -> (String, Arc<AtomicUsize>) {
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let answer = hyper::service::service_fn(|_req| async {
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), answer),
                );
            }
        });
        (url, accepted)
    }

    async fn invoke(clients: &Clients) {
        let call = clients
            .runtime(None)
            .await
            .sdk
            .invoke_model()
            .model_id("anthropic.claude-3-haiku-20240307-v1:0")
            .content_type("application/json")
            .body(aws_sdk_bedrockruntime::primitives::Blob::new("{}"))
            .send();
        let reply = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("an answer in time")
            .expect("the fake answers");
        assert_eq!(reply.body().as_ref(), b"{}");
    }

    #[tokio::test]
    async fn each_serving_thread_calls_over_connections_of_its_own() {
        use aws_sdk_bedrockruntime::config::{Credentials, SharedCredentialsProvider};
        let (url, accepted) = counting_runtime().await;
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            )))
            .build();
        let clients = Arc::new(Clients::built(
            sdk,
            [],
            Duration::from_secs(3),
            Some(url),
            None,
        ));
        // A serving thread calls twice, then keeps its runtime (and the connection it drives)
        // running until told to end.
        let serving = |clients: Arc<Clients>| {
            let (called, calls) = tokio::sync::oneshot::channel();
            let (end, ended) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                crate::server::mark_serving();
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move {
                        invoke(&clients).await;
                        invoke(&clients).await;
                        called.send(()).unwrap();
                        let _ = ended.await;
                    })
            });
            (calls, end, thread)
        };
        let (calls, end_a, a) = serving(clients.clone());
        calls.await.expect("thread a called");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "a thread reuses its connection"
        );
        let (calls, end_b, b) = serving(clients.clone());
        calls.await.expect("thread b called");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "another serving thread opens its own, though the first's is idle"
        );
        invoke(&clients).await;
        invoke(&clients).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "other threads share one client of their own"
        );
        for (end, thread) in [(end_a, a), (end_b, b)] {
            end.send(()).unwrap();
            thread.join().unwrap();
        }
    }
}
