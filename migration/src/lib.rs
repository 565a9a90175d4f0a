//! Schema migrations, run by `hub` on start (under an advisory lock on PostgreSQL) and by `hub migrate`.

pub use sea_orm_migration::prelude::*;

mod common;
mod m20261125_000001_identity;
mod m20261125_000002_master_data;
mod m20261125_000003_transactions;
mod m20261125_000004_payment_keys;
mod m20261125_000005_payments;
mod m20261126_000006_number_hash_rotation;
mod m20261126_000007_payment_flags;
mod m20261126_000008_hardening;
mod m20261126_000009_share_grants_unique;
mod m20261203_000010_sealed_fields;
mod m20261203_000011_drop_plaintext;
mod m20261203_000012_work_and_logistics;
mod m20261203_000013_audit;
mod m20261203_000014_analytics_indexes;
mod m20261203_000015_sales_rollup;
mod m20261203_000016_clearing;
mod m20261204_000017_request_declines;

pub use m20261126_000008_hardening::PREFIX_RANGES_DISJOINT;
pub use m20261203_000011_drop_plaintext::DROP_PLAINTEXT;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_identity::Migration),
            Box::new(m20261125_000002_master_data::Migration),
            Box::new(m20261125_000003_transactions::Migration),
            Box::new(m20261125_000004_payment_keys::Migration),
            Box::new(m20261125_000005_payments::Migration),
            Box::new(m20261126_000006_number_hash_rotation::Migration),
            Box::new(m20261126_000007_payment_flags::Migration),
            Box::new(m20261126_000008_hardening::Migration),
            Box::new(m20261126_000009_share_grants_unique::Migration),
            Box::new(m20261203_000010_sealed_fields::Migration),
            Box::new(m20261203_000011_drop_plaintext::Migration),
            Box::new(m20261203_000012_work_and_logistics::Migration),
            Box::new(m20261203_000013_audit::Migration),
            Box::new(m20261203_000014_analytics_indexes::Migration),
            Box::new(m20261203_000015_sales_rollup::Migration),
            Box::new(m20261203_000016_clearing::Migration),
            Box::new(m20261204_000017_request_declines::Migration),
        ]
    }
}
