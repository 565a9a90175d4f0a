//! The hub's tables as sea-orm entities. No business logic lives here: services in `api` own the rules.

pub mod member;
pub mod organization;

pub use sea_orm;
