//! The hub's tables as sea-orm entities. No business logic lives here: services in `api` own the rules.

pub mod customer;
pub mod device;
pub mod location;
pub mod member;
pub mod organization;
pub mod product;
pub mod share;

pub use sea_orm;
