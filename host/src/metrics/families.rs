//! The Prometheus families: their names, help, labels and buckets, in
//! one place. [`super::Metrics`] records into them.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct JobLabels {
    pub(super) tenant: String,
    pub(super) tube: String,
    pub(super) task: String,
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TaskLabels {
    pub(super) tenant: String,
    pub(super) tube: String,
    pub(super) task: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TenantLabel {
    pub(super) tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModuleLabel {
    pub(super) module: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TubeStateLabels {
    pub(super) tube: String,
    pub(super) state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServerLabel {
    pub(super) server: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabel {
    pub(super) outcome: &'static str,
}

/// The `state` label values of `beanbox_tube_jobs`.
pub(super) const TUBE_STATES: [&str; 4] = ["ready", "reserved", "delayed", "buried"];

pub(super) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Reserve-to-settle seconds: 1 ms to about 4 min.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 19))
}

/// Fuel: a thousand to about 7e10 (the default budget is 1e10).
fn fuel_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e3, 4.0, 14))
}

/// Peak linear memory: 64 KiB (one page) to 4 GiB.
fn memory_histogram() -> Histogram {
    Histogram::new(exponential_buckets(65_536.0, 2.0, 17))
}

/// Load seconds: 10 ms to about 80 s.
fn compile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// Every family (each a shared handle; the registry holds clones).
pub(super) struct Families {
    pub(super) jobs: Family<JobLabels, Counter>,
    pub(super) duration: Histograms<TaskLabels>,
    pub(super) fuel: Histograms<TaskLabels>,
    pub(super) memory: Histograms<TaskLabels>,
    pub(super) instances_created: Family<TenantLabel, Counter>,
    pub(super) instances_reused: Family<TenantLabel, Counter>,
    pub(super) module_loads: Family<ModuleLabel, Counter>,
    pub(super) module_load_failures: Family<ModuleLabel, Counter>,
    pub(super) compile_seconds: Histograms<ModuleLabel>,
    pub(super) reconnects: Counter,
    pub(super) beanstalkd_up: Family<ServerLabel, Gauge<i64, AtomicI64>>,
    pub(super) busy_slots: Family<TenantLabel, Gauge<i64, AtomicI64>>,
    pub(super) tube_jobs: Family<TubeStateLabels, Gauge<i64, AtomicI64>>,
    pub(super) failure_records: Family<OutcomeLabel, Counter>,
}

impl Families {
    /// Every family, empty, and a registry that encodes them.
    pub(super) fn register() -> (Registry, Families) {
        let mut registry = Registry::default();
        let jobs = Family::<JobLabels, Counter>::default();
        let duration = Histograms::<TaskLabels>::new_with_constructor(duration_histogram);
        let fuel = Histograms::<TaskLabels>::new_with_constructor(fuel_histogram);
        let memory = Histograms::<TaskLabels>::new_with_constructor(memory_histogram);
        let instances_created = Family::<TenantLabel, Counter>::default();
        let instances_reused = Family::<TenantLabel, Counter>::default();
        let module_loads = Family::<ModuleLabel, Counter>::default();
        let module_load_failures = Family::<ModuleLabel, Counter>::default();
        let compile_seconds = Histograms::<ModuleLabel>::new_with_constructor(compile_histogram);
        let reconnects = Counter::default();
        let beanstalkd_up = Family::<ServerLabel, Gauge<i64, AtomicI64>>::default();
        let busy_slots = Family::<TenantLabel, Gauge<i64, AtomicI64>>::default();
        let tube_jobs = Family::<TubeStateLabels, Gauge<i64, AtomicI64>>::default();
        let failure_records = Family::<OutcomeLabel, Counter>::default();
        let r = &mut registry;
        r.register(
            "beanbox_jobs",
            "Jobs settled, by tenant, tube, task and outcome (deleted, released, buried, handed_back)",
            jobs.clone(),
        );
        r.register(
            "beanbox_job_duration_seconds",
            "Seconds from a job's reserve to its settling",
            duration.clone(),
        );
        r.register("beanbox_job_fuel", "Fuel a job's call burned", fuel.clone());
        r.register(
            "beanbox_job_memory_bytes",
            "Peak linear memory of a job's call, in bytes",
            memory.clone(),
        );
        r.register(
            "beanbox_instances_created",
            "Fresh instances a tenant's jobs ran in",
            instances_created.clone(),
        );
        r.register(
            "beanbox_instances_reused",
            "Jobs a tenant ran in a kept instance",
            instances_reused.clone(),
        );
        r.register(
            "beanbox_module_loads",
            "Module versions loaded",
            module_loads.clone(),
        );
        r.register(
            "beanbox_module_load_failures",
            "Module versions that failed to load",
            module_load_failures.clone(),
        );
        r.register(
            "beanbox_module_compile_seconds",
            "Seconds a module version took to load (compile, or read from the code cache)",
            compile_seconds.clone(),
        );
        r.register(
            "beanbox_reconnects",
            "Slot connections to beanstalkd reopened after one was lost",
            reconnects.clone(),
        );
        r.register(
            "beanbox_beanstalkd_up",
            "1 while the admin poller reaches the beanstalkd server (one per configured server), else 0",
            beanstalkd_up.clone(),
        );
        r.register(
            "beanbox_busy_slots",
            "A tenant's slots running a job now",
            busy_slots.clone(),
        );
        r.register(
            "beanbox_tube_jobs",
            "Jobs in a served tube by state (ready, reserved, delayed, buried), polled every second",
            tube_jobs.clone(),
        );
        r.register(
            "beanbox_failure_records",
            "Failure records put before burying a job: written or lost",
            failure_records.clone(),
        );
        let families = Families {
            jobs,
            duration,
            fuel,
            memory,
            instances_created,
            instances_reused,
            module_loads,
            module_load_failures,
            compile_seconds,
            reconnects,
            beanstalkd_up,
            busy_slots,
            tube_jobs,
            failure_records,
        };
        (registry, families)
    }
}
