//! The secure payment mode: the financial providers' issuer keys and cards, payment requests at
//! terminals, and one-time-number authorization.

pub mod authorization;
pub mod flags;
pub mod graphql;
pub mod number_keys;
pub mod service;

pub use authorization::AuthorizationService;
pub use number_keys::NumberHashKeys;
pub use service::PaymentKeysService;
