//! Prometheus metrics of the gateway and its instances (text exposition on the admin API's
//! `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    service: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    service: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    service: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    service: String,
    state: String,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
    .into_iter()
}

/// All metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    latency: Family<ServiceLabel, Histogram>,
    cold_starts: Family<ServiceLabel, Counter>,
    cold_phase: Family<PhaseLabels, Histogram>,
    boots: Counter,
    crashes: Family<ServiceLabel, Counter>,
    instances: Family<StateLabels, Gauge>,
    instance_failures: Family<ReasonLabels, Counter>,
    slow_clients: Family<StageLabel, Counter>,
    refused_connections: Counter,
    connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mayfly");
        let requests = Family::<StatusLabels, Counter>::default();
        registry.register("requests", "Requests answered, by service and status", requests.clone());
        let latency = Family::<ServiceLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "request_duration_seconds",
            "Time from request arrival at the gateway to the response",
            latency.clone(),
        );
        let cold_starts = Family::<ServiceLabel, Counter>::default();
        registry.register(
            "cold_starts",
            "Requests that had to wait for an instance to start",
            cold_starts.clone(),
        );
        let cold_phase = Family::<PhaseLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "cold_start_phase_seconds",
            "Cold-start phases: spawn (process start to VM ready), ready (arrival to an instance), boot (guest entered to first response), first_byte (arrival to response)",
            cold_phase.clone(),
        );
        let boots = Counter::default();
        registry.register(
            "boots",
            "Guests started (boots per second: rate of this)",
            boots.clone(),
        );
        let crashes = Family::<ServiceLabel, Counter>::default();
        registry.register("crashes", "Instances that stopped on their own", crashes.clone());
        let instances = Family::<StateLabels, Gauge>::default();
        registry.register("instances", "Instances by state", instances.clone());
        let instance_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "instance_failures",
            "Requests an instance failed (unreachable, response too large or too slow); the instance is then destroyed",
            instance_failures.clone(),
        );
        let slow_clients = Family::<StageLabel, Counter>::default();
        registry.register(
            "gateway_slow_clients",
            "Clients cut off for sending a request head or body too slowly, by stage",
            slow_clients.clone(),
        );
        let refused_connections = Counter::default();
        registry.register(
            "gateway_refused_connections",
            "Client connections closed at once because max_connections were open",
            refused_connections.clone(),
        );
        let connections = Gauge::default();
        registry.register("gateway_connections", "Client connections open", connections.clone());
        Metrics {
            registry,
            requests,
            latency,
            cold_starts,
            cold_phase,
            boots,
            crashes,
            instances,
            instance_failures,
            slow_clients,
            refused_connections,
            connections,
        }
    }

    /// A request to `service` was answered with `status` after `seconds`.
    pub fn request(&self, service: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&StatusLabels { service: service.into(), status: status.to_string() })
            .inc();
        self.latency.get_or_create(&ServiceLabel { service: service.into() }).observe(seconds);
    }

    /// A request waited for an instance to start.
    pub fn cold_start(&self, service: &str) {
        self.cold_starts.get_or_create(&ServiceLabel { service: service.into() }).inc();
    }

    /// One phase of a cold start took `seconds`: `spawn` (process start to VM ready), `ready`
    /// (request arrival to an instance taking it), `boot` (guest entered to its first response),
    /// `first_byte` (arrival to the response).
    pub fn cold_phase(&self, service: &str, phase: &str, seconds: f64) {
        self.cold_phase
            .get_or_create(&PhaseLabels { service: service.into(), phase: phase.into() })
            .observe(seconds);
    }

    /// A guest was started.
    pub fn boot(&self) {
        self.boots.inc();
    }

    /// An instance of `service` crashed.
    pub fn crash(&self, service: &str) {
        self.crashes.get_or_create(&ServiceLabel { service: service.into() }).inc();
    }

    /// An instance of `service` failed a request for `reason`.
    pub fn instance_failed(&self, service: &str, reason: &str) {
        self.instance_failures
            .get_or_create(&ReasonLabels { service: service.into(), reason: reason.into() })
            .inc();
    }

    /// A client was cut off for being too slow at `stage` (`head` or `body`).
    pub fn slow_client(&self, stage: &str) {
        self.slow_clients.get_or_create(&StageLabel { stage: stage.into() }).inc();
    }

    /// A connection was refused: `max_connections` were open.
    pub fn refused_connection(&self) {
        self.refused_connections.inc();
    }

    /// A client connection opened (`1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// Sets the number of instances of `service` in `state`.
    pub fn set_instances(&self, service: &str, state: &str, count: usize) {
        self.instances
            .get_or_create(&StateLabels { service: service.into(), state: state.into() })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
