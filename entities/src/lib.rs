//! The hub's tables as sea-orm entities. No business logic lives here: services in `api` own the rules.

pub mod audit_entry;
pub mod card;
pub mod clearing_batch;
pub mod clearing_entry;
pub mod clearing_manifest;
pub mod customer;
pub mod delivery;
pub mod device;
pub mod encryption_key;
pub mod event;
pub mod event_recipient;
pub mod idempotency_record;
pub mod invoice;
pub mod issuer_key;
pub mod location;
pub mod member;
pub mod number_use;
pub mod order;
pub mod order_line;
pub mod order_party;
pub mod organization;
pub mod payment;
pub mod payment_evidence;
pub mod payment_request;
pub mod product;
pub mod sales_daily;
pub mod sales_pending;
pub mod share;
pub mod travel_record;
pub mod work_plan;
pub mod work_record;

pub use sea_orm;
