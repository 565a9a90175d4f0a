//! Work transactions: work plans (what one organization asks another to do, about an order, a location
//! or a device, and when) and the work records their assignee appends. The planner owns a plan; the
//! assignee is its party: it sees the plan, starts and completes it, and records what was done. Every
//! committed change writes one outbox event of the WORK family.

pub mod graphql;
pub mod service;

pub use service::WorkService;
