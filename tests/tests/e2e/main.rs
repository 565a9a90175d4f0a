//! End-to-end tests of the hub over HTTP. One test binary (modules below) keeps link time down.

mod access_cache;
mod analytics;
mod audit;
mod binary;
mod clearing;
mod devices;
mod directory;
mod encryption;
mod encryption_rotation;
mod financial;
mod guard_rails;
mod hostile_input;
mod master_data;
mod pages;
mod pagination;
mod payment_keys;
mod payments;
mod reader_agent;
mod roles;
mod schema_snapshot;
mod subscriptions;
mod tokens;
mod work_logistics;
