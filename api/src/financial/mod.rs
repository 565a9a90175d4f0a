//! Financial transactions: orders with lines priced by the hub, invoices raised from orders, and the
//! payment records the payment mode fills in. Every committed change writes one outbox event.

pub mod graphql;
mod invoices;
mod lines;
pub mod service;

pub use service::FinancialService;
