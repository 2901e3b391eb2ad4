//! Logging and tracing: `tracing` to stderr (text or JSON), OTLP/gRPC export when an
//! endpoint is configured, and W3C trace context carried in NATS headers.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Telemetry settings of a service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `RUST_LOG`-style filter.
    pub log: String,
    /// `text` or `json`.
    pub format: String,
    /// OTLP/gRPC endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`); export is off when empty.
    pub otlp_endpoint: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log: "info".to_owned(),
            format: "text".to_owned(),
            otlp_endpoint: String::new(),
        }
    }
}

/// Telemetry failures at start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Bad filter.
    #[error("invalid log filter {0:?}: {1}")]
    Filter(String, String),
    /// Bad format.
    #[error("invalid log format {0:?}: use text or json")]
    Format(String),
    /// The OTLP exporter could not be built.
    #[error("cannot build OTLP exporter for {0}: {1}")]
    Exporter(String, String),
    /// A subscriber was already installed.
    #[error("telemetry already initialised")]
    AlreadyInit,
}

/// Flushes and stops the exporter when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes pending spans.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber and, when configured, the OTLP exporter. Must run inside
/// a multi-thread tokio runtime when export is on.
///
/// # Errors
/// [`TelemetryError`] for a bad filter, format or endpoint.
pub fn init(service: &str, cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let filter = EnvFilter::try_new(&cfg.log)
        .map_err(|e| TelemetryError::Filter(cfg.log.clone(), e.to_string()))?;
    let json = match cfg.format.as_str() {
        "text" => false,
        "json" => true,
        other => return Err(TelemetryError::Format(other.to_owned())),
    };
    let provider = if cfg.otlp_endpoint.is_empty() {
        None
    } else {
        Some(build_provider(service, &cfg.otlp_endpoint)?)
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    let (text_layer, json_layer) = if json {
        (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            ),
        )
    } else {
        (
            Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)),
            None,
        )
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text_layer)
        .with(json_layer)
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInit)?;
    Ok(TelemetryGuard { provider })
}

/// Builds a tracer provider exporting to `endpoint` (also used by tests with their own collector).
///
/// # Errors
/// [`TelemetryError::Exporter`] when the exporter cannot be built.
pub fn build_provider(
    service: &str,
    endpoint: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter(endpoint.to_owned(), e.to_string()))?;
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

struct NatsInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the current span's trace context (`traceparent`, `tracestate`) into `headers`.
pub fn inject_nats(headers: &mut async_nats::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut NatsInjector(headers))
    });
}

/// Makes `span` a child of the trace context in `headers`, if any. Call before entering it.
pub fn set_parent_from_nats(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(h) = headers {
        let parent =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&NatsExtractor(h)));
        let _ = span.set_parent(parent);
    }
}
