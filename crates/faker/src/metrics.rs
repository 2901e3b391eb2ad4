//! Prometheus metrics of the faker; [`Stats`] reads the same counters for tests.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// All metrics (cheap to clone: handles share their values).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `POST /api/v1/access_token/` requests.
    pub token_requests: Counter,
    /// Tokens handed out.
    pub tokens_issued: Counter,
    /// Token requests refused for a missing or wrong secret key (401).
    pub secret_rejections: Counter,
    /// `GET /api/v1/search/` requests, whatever their outcome.
    pub search_requests: Counter,
    /// Search pages answered with 200.
    pub pages_served: Counter,
    /// Search requests refused for a missing, unknown or expired token (401).
    pub unauthorized: Counter,
    /// Search requests refused as malformed (400).
    pub bad_requests: Counter,
    /// Search requests failed on purpose (503).
    pub injected_failures: Counter,
    /// Devices sent in search results.
    pub devices_served: Counter,
    /// Current churn epoch.
    pub churn_epoch: Gauge,
}

impl Metrics {
    /// Registers every metric under `sr_faker_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sr_faker");
        r.register(
            "token_requests",
            "Access token requests",
            self.token_requests.clone(),
        );
        r.register(
            "tokens_issued",
            "Access tokens issued",
            self.tokens_issued.clone(),
        );
        r.register(
            "secret_rejections",
            "Token requests refused for a missing or wrong secret key",
            self.secret_rejections.clone(),
        );
        r.register(
            "search_requests",
            "Search requests received",
            self.search_requests.clone(),
        );
        r.register(
            "pages_served",
            "Search pages answered",
            self.pages_served.clone(),
        );
        r.register(
            "unauthorized",
            "Search requests refused for a missing, unknown or expired token",
            self.unauthorized.clone(),
        );
        r.register(
            "bad_requests",
            "Search requests refused as malformed",
            self.bad_requests.clone(),
        );
        r.register(
            "injected_failures",
            "Search requests failed on purpose",
            self.injected_failures.clone(),
        );
        r.register(
            "devices_served",
            "Devices sent in search results",
            self.devices_served.clone(),
        );
        r.register(
            "churn_epoch",
            "Current IP churn epoch",
            self.churn_epoch.clone(),
        );
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats {
            token_requests: self.token_requests.get(),
            tokens_issued: self.tokens_issued.get(),
            secret_rejections: self.secret_rejections.get(),
            search_requests: self.search_requests.get(),
            pages_served: self.pages_served.get(),
            unauthorized: self.unauthorized.get(),
            bad_requests: self.bad_requests.get(),
            injected_failures: self.injected_failures.get(),
            devices_served: self.devices_served.get(),
        }
    }
}

/// What the faker has served since it was built (for test assertions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// `POST /api/v1/access_token/` requests.
    pub token_requests: u64,
    /// Tokens handed out.
    pub tokens_issued: u64,
    /// Token requests answered 401 (missing or wrong secret key).
    pub secret_rejections: u64,
    /// `GET /api/v1/search/` requests, whatever their outcome.
    pub search_requests: u64,
    /// Search pages answered 200.
    pub pages_served: u64,
    /// Search requests answered 401 (missing, unknown, invalidated or expired token).
    pub unauthorized: u64,
    /// Search requests answered 400.
    pub bad_requests: u64,
    /// Search requests answered 503 on purpose ([`crate::FakerHandle::fail_next_searches`]).
    pub injected_failures: u64,
    /// Devices sent in search results.
    pub devices_served: u64,
}
