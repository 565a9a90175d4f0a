//! The IoT Commerce Hub: a GraphQL data hub shared by a retailer and its partners.
//!
//! Layout: `config` (flags and environment), `auth` (keys, tokens, principals), `policy` (the one place
//! for access rules), one module per domain (`identity`, `master_data`, `financial`, `work`,
//! `logistics`, `payments`, `events`) with a service layer, `audit` (the hash-chained trail of every mutation) and thin GraphQL resolvers, `graphql` (schema assembly, Relay IDs
//! and connections, the cost bound on documents, error codes), `http` (routes and middleware), `db`
//! (connection, migrations, bootstrap, pagination, named constraints), `idempotency` and `server`
//! (start and stop); `transitions` is the state-machine step shared by work plans and deliveries. The payment rules are in `docs/payments.md`, event ordering in `docs/events.md`.

// The merged GraphQL roots nest one level per domain; their futures' layout needs more than the
// default query depth.
#![recursion_limit = "256"]

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod clearing;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod events;
pub mod financial;
pub mod graphql;
pub mod http;
pub mod idempotency;
pub mod identity;
pub mod logistics;
pub mod master_data;
pub mod payments;
pub mod policy;
pub mod records;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod transitions;
pub mod work;
