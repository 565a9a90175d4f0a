//! GraphQL for the payment mode, split as the services are: issuer keys and cards (`issuers`),
//! payment requests (`requests`) and the approval of taps (`approval`). Thin: decode, call, wrap.

mod approval;
mod issuers;
mod requests;

pub use approval::{ApprovalMutation, DeclineReason, DeclinesQuery, PayPayload, PaymentDecline};
pub use issuers::{Card, IssuerKey, PaymentKeysMutation, PaymentKeysQuery};
pub use requests::{
    PaymentRequest, PaymentRequestMutation, PaymentRequestQuery, PaymentRequestSubscription,
};
