//! End-to-end tests: real beanstalkd, real `runner`, real components.
//!
//! One test binary for the crate; each module below is one area.

mod browser_support;
mod deploy_support;
mod http_support;
mod support;
mod worker_support;

mod admin_attack;
mod admin_cli;
mod admin_servers;
mod budgets;
mod cache;
mod cache_worker;
mod cli;
mod compute;
mod conversion;
mod dashboard;
mod denial;
mod deploy;
mod deploy_cli;
mod fleet;
mod hostile_jobs;
mod inspect;
mod javascript;
mod limits;
mod loading;
mod metrics;
mod per_job;
mod put;
mod put_servers;
mod python;
mod python_worker;
mod replies;
mod reuse;
mod sdk;
mod seed;
mod servers;
mod settling;
mod tenants;
mod worker;
