//! Events: the transactional outbox of transaction records, stamped with positions in commit order.

pub mod bus;
pub mod feed;
pub mod graphql;
pub mod outbox;

pub use bus::Bus;
pub use feed::EventFeed;
pub use outbox::{EventService, FINANCIAL, LOGISTIC, NewEvent, Outbox, WORK, record, stage_event};
