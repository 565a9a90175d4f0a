//! The secure payment mode (`docs/payments.md`): the financial providers' issuer keys and cards
//! (`issuers`), payment requests at terminals (`requests`), and the approval of a tap (`approval`),
//! with why a tap is declined (`decline`), review flags (`flags`) and the number-hash key ring
//! (`number_keys`); then capture, void, refund and expiry of authorizations (`settlement`).

pub mod approval;
pub mod decline;
pub mod flags;
pub mod graphql;
pub mod issuers;
pub mod number_keys;
pub mod requests;
pub mod settlement;

pub use approval::ApprovalService;
pub use issuers::PaymentKeysService;
pub use number_keys::NumberHashKeys;
pub use requests::PaymentRequestService;
pub use settlement::SettlementService;
