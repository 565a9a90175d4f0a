//! Analytics over the shared data: figures computed in the database, one aggregate query per figure,
//! over exactly the rows the caller may see (the same policy conditions as every list), never by
//! loading rows into the hub.

pub mod graphql;
pub mod rollup;
pub mod service;

pub use rollup::SalesFolder;
pub use service::AnalyticsService;
