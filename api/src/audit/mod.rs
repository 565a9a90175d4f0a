//! The audit trail: every mutation that changes something appends one entry (who, for which
//! organization, which operation, which record, a keyed digest of its input, the database's time) in
//! its own transaction. After commit, entries are linked into one hash chain per organization, each
//! link an HMAC under the audit key, which lives in a file and never in the database. Signed
//! checkpoints of a chain's head can be exported, and verification recomputes a chain and names its
//! first broken place. The byte layouts are in [`chain`] and `docs/audit.md`.
//!
//! - [`scope`]: the GraphQL extension that scopes each mutation, and the append in its transaction;
//! - [`linker`]: links committed entries in commit order, one linker at a time;
//! - [`service`]: verification and checkpoints; [`graphql`]: `auditCheckpoint` and `verifyAudit`.

pub mod chain;
pub mod graphql;
pub mod linker;
pub mod scope;
pub mod service;

pub use chain::AuditKey;
pub use linker::Linker;
pub use scope::touch;
pub use service::{AuditService, Checkpoint, Verification};
