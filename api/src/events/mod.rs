//! Events: the transactional outbox of transaction records, stamped with positions in commit order.

pub mod graphql;
pub mod outbox;

pub use outbox::{EventService, FINANCIAL, NewEvent, Outbox, record};
