//! Protocol tests: fixed vectors, tampering, the card state machine, property tests, issuer tooling.

mod card;
mod fixtures;
mod independent_layout;
mod properties;
mod tampering;
mod tool;
mod vectors;
