//! Identity: organizations (the directory), their members, and the tokens members act with.

pub mod graphql;
pub mod service;

pub use service::IdentityService;
