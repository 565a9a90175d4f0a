//! Device tokens, verified here and signed by devices: the rules live in the `device-token` crate, which
//! the reader agent, the benchmark and the tests share with the hub.

pub use device_token::*;
