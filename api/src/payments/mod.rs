//! The secure payment mode. So far: the financial providers' issuer keys and the cards they issue
//! (payment requests and one-time-number authorization build on these).

pub mod graphql;
pub mod service;

pub use service::PaymentKeysService;
