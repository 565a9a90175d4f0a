//! Clearing: every capture and refund joins the open batch of its merchant, provider and currency; a
//! batch closes (by the merchant's ADMIN, or on schedule) into a frozen canonical manifest, and the
//! provider confirms exactly that manifest with an ed25519 signature under one of its registered keys.
//! The rules, the manifest's byte layout and the reconciliation are in `docs/clearing.md`.

pub mod graphql;
pub mod manifest;
mod service;

pub use service::{
    BatchFilter, ClearingService, Recomputed, clearing_now, export_manifest, join_open_batch,
};
