//! The secure payment mode: the financial providers' issuer keys and cards, payment requests at
//! terminals, and one-time-number authorization.

pub mod authorization;
pub mod graphql;
pub mod service;

pub use authorization::AuthorizationService;
pub use service::PaymentKeysService;
