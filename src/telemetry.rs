//! Logging setup, and OpenTelemetry trace export when built with the `otel` feature.
//!
//! [`init_tracing`] installs the global `tracing` subscriber: the log lines of `LOG_LEVEL` /
//! `LOG_FORMAT` as before, and — only in a build with `--features otel` *and* with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set — a
//! `tracing_opentelemetry` layer that exports spans over OTLP/HTTP with protobuf bodies. Without
//! the feature none of the OpenTelemetry crates is compiled; with it but without an endpoint,
//! nothing changes either.
//!
//! What is exported: the spans of target `access` and of this crate at `INFO` or above, whatever
//! `LOG_LEVEL` says (logging and export are filtered apart). That is the one span per request
//! that the access-log layer (`observe`) opens when a request arrives and closes when it
//! is finished (for a stream, at its last byte), named `"{METHOD} {route}"` (e.g. `POST chat`),
//! with `http.request.method`, `url.path`, `http.response.status_code`, `request_id`,
//! `error.type` and, for model calls, `gen_ai.operation.name`, `gen_ai.system` (the provider),
//! `gen_ai.request.model`, `gen_ai.usage.input_tokens` and `gen_ai.usage.output_tokens`; 5xx
//! answers and broken streams set the span status to error. Log events are not exported.
//!
//! Configuration is the standard OpenTelemetry environment, read by the SDK and exporter:
//!
//! | Variable | Meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | collector base URL; traces go to `{it}/v1/traces` |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full traces URL (wins over the above) |
//! | `OTEL_EXPORTER_OTLP_HEADERS` / `_TRACES_HEADERS` | extra headers, `k=v,k2=v2` |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` / `_TRACES_TIMEOUT` | export timeout in ms (default 10000) |
//! | `OTEL_SERVICE_NAME` | `service.name` (default `open-bedrock-server`) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | more resource attributes, `k=v,…` |
//! | `OTEL_TRACES_SAMPLER` / `_ARG` | sampler (default `parentbased_always_on`) |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, … | batching (default every 5000 ms) |
//! | `OTEL_SDK_DISABLED=true` | turn export off |
//!
//! Only `http/protobuf` is spoken (`OTEL_EXPORTER_OTLP_PROTOCOL` = `grpc` or `http/json` is
//! ignored with a warning); `http://` and `https://` (rustls, webpki roots) both work. The HTTP
//! client is the hyper client the gateway already uses, driven by a one-thread runtime of its own
//! so that exports never compete with requests and the flush at exit works after the gateway's
//! runtime is gone. Spans are batched; the [`TelemetryGuard`] that [`init_tracing`] returns flushes
//! the batch and shuts the exporter down when dropped, so keep it alive until the process exits.
//!
//! `LOG_FORMAT=json` lines are written by hand (`json_line`): the same object tracing-subscriber's
//! JSON formatter writes, without its intermediate map and second serialization. The access line
//! skips the `tracing` event altogether: `observe` hands its fields to `json_line::access_line`
//! (the same line, byte for byte; whether `LOG_LEVEL` lets it through is asked once, at start-up).
//! Access-log lines are written to standard output in batches (`batch`, `LOG_FLUSH_MS`), every
//! other line at once.

mod batch;
#[cfg(test)]
pub(crate) mod capture;
pub(crate) mod json_line;

use crate::config::{LogConfig, LogFormat};

/// Keeps trace export running; flushes and shuts it down when dropped. Without the `otel`
/// feature, or without an endpoint, it holds nothing.
#[must_use = "dropping the guard stops trace export"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    #[cfg(feature = "otel")]
    otel: Option<otel::Export>,
    /// Held for its drop, which writes the access-log lines still batched.
    _flusher: Option<batch::Flusher>,
}

impl TelemetryGuard {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.otel.is_some()
        }
        #[cfg(not(feature = "otel"))]
        {
            false
        }
    }
}

/// Installs the global subscriber: log lines on standard output at `log.level` (an `EnvFilter`
/// directive; `info` if it is invalid), as JSON objects or text as `log.format` says, the access
/// log written in batches about `log.flush` after each line (`batch`; 0 writes each line
/// at once); plus span export when it is configured (see the module docs). Call once, before the
/// first log line; keep the guard until exit: dropping it writes the access lines still batched.
///
/// # Panics
/// If a global subscriber is already installed.
pub fn init_tracing(log: &LogConfig) -> TelemetryGuard {
    #[cfg(feature = "otel")]
    if let Some(guard) = otel::init(log) {
        return guard;
    }
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (layer, flusher) = log_layer(log);
    tracing_subscriber::registry().with(layer).init();
    TelemetryGuard {
        #[cfg(feature = "otel")]
        otel: None,
        _flusher: flusher,
    }
}

/// The log lines' layer as `log` says (filter, format, and the access log batched unless
/// `flush` is zero), and the flusher of its batches.
fn log_layer(log: &LogConfig) -> (BoxedLayer, Option<batch::Flusher>) {
    let batched = if log.flush.is_zero() {
        None
    } else {
        match batch::Batched::new(Box::new(std::io::stdout()), log.flush) {
            Ok(batched) => Some(batched),
            Err(e) => {
                eprintln!(
                    "open-bedrock-server: cannot start the log-flush thread ({e}); \
                     the access log is written a line at a time"
                );
                None
            }
        }
    };
    if log.format == LogFormat::Json {
        // `None` when `LOG_LEVEL` leaves access lines out: they are then not written at all.
        let sink = access_enabled(&log.level).then(|| {
            batched
                .as_ref()
                .map_or(AccessSink::Stdout, |(w, _)| AccessSink::Batched(w.clone()))
        });
        crate::observe::set_line_writer(Box::new(move |line| {
            if let Some(sink) = &sink {
                sink.write(line);
            }
        }));
    }
    match batched {
        Some((writer, flusher)) => (lines(log, writer), Some(flusher)),
        None => (lines(log, std::io::stdout), None),
    }
}

/// Where the JSON log writes access lines itself (`observe::set_line_writer`): the batches of
/// the log's writer, or standard output a line at a time.
enum AccessSink {
    Batched(batch::Batched),
    Stdout,
}

impl AccessSink {
    /// The access line in JSON: the line the log layer would have written for the access event,
    /// without the event.
    fn write(&self, line: &crate::observe::AccessLine<'_>) {
        json_line::access_line(std::time::SystemTime::now(), line, |bytes| match self {
            AccessSink::Batched(w) => w.access(bytes),
            // A failed write loses the line, as the event's would.
            AccessSink::Stdout => {
                use std::io::Write as _;
                let _ = std::io::stdout().lock().write_all(bytes);
            }
        });
    }
}

/// Whether the log layer [`lines`] builds for `level` takes the access event: the event itself
/// (`observe`'s callsite, its fields and all, outside any span) is emitted once to a subscriber
/// with only that filter, before the global one is installed. Asking `enabled!` instead would
/// not do: a directive naming fields (`[{password}]=off`) applies to such a probe whatever
/// fields the event has.
fn access_enabled(level: &str) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::Layer as _;

    /// Notes that an event got through its filters.
    struct Seen(Arc<AtomicBool>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    let seen = Arc::new(AtomicBool::new(false));
    let layer = Seen(Arc::clone(&seen)).with_filter(line_filter(level));
    let probe = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(probe, crate::observe::emit_access_probe);
    seen.load(Ordering::Relaxed)
}

type BoxedLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static>;

/// The fmt layer over `writer`: `log.level`'s filter (`info` if invalid), text or JSON lines.
fn lines<W>(log: &LogConfig, writer: W) -> BoxedLayer
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    let filter = line_filter(&log.level);
    let layer = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_writer(writer);
    if log.format == LogFormat::Json {
        layer
            .json()
            .flatten_event(true)
            .event_format(json_line::JsonLine::new())
            .with_filter(filter)
            .boxed()
    } else {
        layer.with_filter(filter).boxed()
    }
}

/// What the log lines take, as one filter: `LOG_LEVEL`'s events ([`level_filter`]), no spans
/// ([`lines_only`]). Nested (`.with_filter(a).with_filter(b)`), each would be a filter of its
/// own, and the outer one, which passes every event, would keep alive every callsite that
/// `LOG_LEVEL` excludes: each debug and trace event of a dependency (hyper-util's pool logs
/// four per request) would be checked and dispatched at run time, then dropped. Combined, such
/// a callsite is off for good and the log level is the subscriber's level hint.
fn line_filter(
    level: &str,
) -> impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> {
    use tracing_subscriber::filter::FilterExt as _;
    level_filter(level).and(lines_only())
}

/// `LOG_LEVEL`'s filter: an `EnvFilter` directive, `info` if it is invalid.
fn level_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Events only. The request spans (`observe`) are for trace export and never entered,
/// so no line is inside one; left to the log layer, every `Span::record` would format the
/// span's fields again (in JSON: the whole map, re-serialized per field — most of the
/// instructions of a request, by callgrind) for nothing. Its level hint passes every level, so
/// that in [`line_filter`] the level filter's own hint decides.
fn lines_only() -> tracing_subscriber::filter::FilterFn {
    let events: tracing_subscriber::filter::FilterFn =
        tracing_subscriber::filter::filter_fn(|meta| !meta.is_span());
    events.with_max_level_hint(tracing_subscriber::filter::LevelFilter::TRACE)
}

#[cfg(feature = "otel")]
mod otel {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    use bytes::Bytes;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry::Key;
    use opentelemetry_http::{HttpClient, HttpError, Request, Response};
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing::Level;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    use super::TelemetryGuard;

    /// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one.
    const SERVICE_NAME: &str = "open-bedrock-server";
    /// How long the flush at exit may take.
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

    /// The running export: the provider, and the runtime its HTTP client runs on.
    #[derive(Debug)]
    pub(super) struct Export {
        provider: SdkTracerProvider,
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl Drop for Export {
        fn drop(&mut self) {
            if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                eprintln!("open-bedrock-server: trace export shutdown: {e}");
            }
            if let Some(rt) = self.runtime.take() {
                rt.shutdown_timeout(Duration::from_secs(1));
            }
        }
    }

    fn env(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }

    /// `None` when export is not configured (the caller sets up plain logging) or cannot start
    /// (said on stderr, and the gateway runs without it).
    pub(super) fn init(log: &crate::config::LogConfig) -> Option<TelemetryGuard> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        let export = match start() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("open-bedrock-server: trace export disabled: {e}");
                return None;
            }
        };
        let tracer = export.provider.tracer(SERVICE_NAME);
        let exported = Targets::new()
            .with_target("access", Level::INFO)
            .with_target(env!("CARGO_CRATE_NAME"), Level::INFO);
        // Spans here are never entered: idle/busy time and the thread would say nothing.
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_filter(exported);
        let (fmt_layer, flusher) = super::log_layer(log);
        tracing_subscriber::registry()
            .with(fmt_layer)
            .with(otel_layer)
            .init();
        if let Some(p) = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .filter(|p| p.trim() != "http/protobuf")
        {
            tracing::warn!(protocol = %p, "only OTLP http/protobuf is supported; using it");
        }
        Some(TelemetryGuard {
            otel: Some(export),
            _flusher: flusher,
        })
    }

    fn start() -> Result<Export, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otel-export")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start its runtime: {e}"))?;
        let timeout = [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .iter()
        .find_map(|v| env(v)?.trim().parse::<u64>().ok())
        .map_or(
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT,
            Duration::from_millis,
        );
        let client = OnRuntime::new(runtime.handle().clone(), timeout)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(timeout)
            .with_http_client(client)
            .build()
            .map_err(|e| e.to_string())?;
        let detected = Resource::builder().build();
        let named = detected
            .get(&Key::from_static_str("service.name"))
            .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
        let resource = if named {
            detected
        } else {
            Resource::builder().with_service_name(SERVICE_NAME).build()
        };
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        Ok(Export {
            provider,
            runtime: Some(runtime),
        })
    }

    type Connector =
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

    /// The OTLP exporter's HTTP client: hyper (+ rustls for `https://`), with each request run on
    /// the export runtime, because the SDK's batch processor calls it from a plain thread.
    #[derive(Debug)]
    struct OnRuntime {
        runtime: tokio::runtime::Handle,
        client: opentelemetry_http::hyper::HyperClient<Connector>,
    }

    impl OnRuntime {
        fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> Result<Self, String> {
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(timeout));
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
                .map_err(|e| format!("TLS setup failed: {e}"))?
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http);
            Ok(OnRuntime {
                runtime,
                client: opentelemetry_http::hyper::HyperClient::new(https, timeout, None),
            })
        }
    }

    // `HttpClient` is an `async_trait`; this is the signature it expands to.
    impl HttpClient for OnRuntime {
        fn send_bytes<'a, 'b>(
            &'a self,
            request: Request<Bytes>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
        where
            'a: 'b,
            Self: 'b,
        {
            let client = self.client.clone();
            let task = self
                .runtime
                .spawn(async move { client.send_bytes(request).await });
            Box::pin(async move { task.await.map_err(|e| Box::new(e) as HttpError)? })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct access line is written exactly when `LOG_LEVEL` would let the access event
    /// through: per-target directives, `off`, and an invalid filter (read as `info`).
    #[test]
    fn the_access_line_follows_log_level() {
        for (level, expected) in [
            ("info", true),
            ("debug", true),
            ("warn", false),
            ("error,access=info", true),
            ("info,access=warn", false),
            ("access=off,info", false),
            ("open_bedrock_server=debug", false),
            ("off", false),
            ("=[nonsense", true),
            // Field directives apply to events with those fields only.
            ("info,[{password}]=off", true),
            ("warn,access[{nosuch}]=info", false),
            ("warn,access[{status}]=info", true),
        ] {
            assert_eq!(access_enabled(level), expected, "{level}");
        }
    }

    /// The log lines' layer leaves out, for good, what `LOG_LEVEL` leaves out: its level hint is
    /// the filter's, and a dependency's debug event is never of interest to it (nested filters
    /// left such a callsite live, and offered every event, then dropped it: a cost on every
    /// request). Asked of the subscriber itself, not through `enabled!`, whose callsite cache is
    /// shared with the other tests' subscribers.
    #[test]
    fn events_below_log_level_are_not_dispatched() {
        use tracing::callsite::{Callsite, Identifier};
        use tracing::metadata::Kind;
        use tracing::subscriber::Interest;
        use tracing::{Level, Metadata, Subscriber as _};
        use tracing_subscriber::filter::LevelFilter;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::Layer as _;

        /// A callsite of its own for each event the test asks about.
        struct Site(&'static Metadata<'static>);
        impl Callsite for Site {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                self.0
            }
        }
        macro_rules! event {
            ($target:literal, $level:expr) => {{
                static SITE: Site = Site(&META);
                static META: Metadata<'static> = Metadata::new(
                    "event",
                    $target,
                    $level,
                    None,
                    None,
                    None,
                    tracing::field::FieldSet::new(&[], Identifier(&SITE)),
                    Kind::EVENT,
                );
                &META
            }};
        }
        let pool_debug = event!("hyper_util::client::legacy::pool", Level::DEBUG);
        let pool_trace = event!("hyper_util::client::legacy::pool", Level::TRACE);
        let access = event!("access", Level::INFO);

        for format in [LogFormat::Json, LogFormat::Text] {
            let log = LogConfig {
                level: "info".into(),
                format,
                ..LogConfig::default()
            };
            let layer = lines(&log, std::io::sink);
            assert_eq!(
                layer.max_level_hint(),
                Some(LevelFilter::INFO),
                "{format:?}"
            );
            let subscriber = tracing_subscriber::registry().with(layer);
            for below in [pool_debug, pool_trace] {
                assert!(subscriber.register_callsite(below).is_never(), "{format:?}");
            }
            assert!(
                subscriber.register_callsite(access).is_always(),
                "{format:?}"
            );
            assert!(subscriber.enabled(access), "{format:?}");
        }
    }
}
