//! Logistic transactions: deliveries (an order's goods, moved by a carrier from an origin location to a
//! recipient within a promised window) and their travel records (the carrier's tracking events). The
//! shipper owns a delivery (it owns the order); the carrier is its party: it sees the delivery, moves it
//! along and appends travel records. Recipient details and positions are sealed (field-level
//! encryption); both parties read them. Every committed change writes one outbox event of the LOGISTIC
//! family.

pub mod graphql;
pub mod sensitive;
pub mod service;

pub use service::LogisticsService;
