//! The approval of taps and the declines one may see, over [`ApprovalService`].

use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, Utc};

use crate::graphql::relay::IntoConnection;
use crate::payments::approval::{ApprovalService, PaymentOutcome, Submission};
use crate::{
    financial::graphql::Payment,
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
    },
    records::RecordKind,
};

fn approval<'a>(ctx: &Context<'a>) -> &'a ApprovalService {
    ctx.data_unchecked::<ApprovalService>()
}

/// Why a payment was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::payment_evidence::DeclineReason")]
pub enum DeclineReason {
    /// No issuer key with the token's issuer and key id.
    UnknownIssuerKey,
    /// The key was retired and its validity has passed.
    IssuerKeyRetired,
    /// The key was revoked (compromise): every number under it is dead.
    IssuerKeyRevoked,
    /// The issuer's signature over the token does not verify.
    BadIssuerSignature,
    /// The number is outside the key's registered prefix range.
    NumberOutOfRange,
    /// The number is past its not-after (or would outlive its key).
    NumberExpired,
    /// The token's domain restrictions (amount, currency, merchant, channel) forbid this payment.
    DomainRestriction,
    /// The token's card is not registered by its issuer.
    CardUnknown,
    /// The card is blocked.
    CardBlocked,
    /// The card key in the token differs from the registered card's key.
    CardKeyMismatch,
    /// The card's signature over this request does not verify.
    BadCardSignature,
    /// No such request at this terminal.
    RequestUnknown,
    /// The request was cancelled.
    RequestCancelled,
    /// The request is already paid (a replay, a double tap, or a second card).
    RequestAlreadyPaid,
    /// Past the acceptance deadline, or a late tap above the offline floor limit.
    PastDeadline,
    /// The payment would exceed the order's unpaid balance.
    AmountAboveBalance,
    /// The number was used before (a replay).
    NumberAlreadyUsed,
    /// The card's sequence was used before.
    SequenceReused,
    /// The device's value cap is reached.
    LimitExceeded,
    /// Above the contactless limit or the card's velocity limits: cardholder verification required.
    CvmRequired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum PaymentOutcomeStatus {
    Authorized,
    Declined,
}

#[derive(InputObject)]
pub struct PayWithOneTimeNumberInput {
    request_id: ID,
    /// The card's token, base64url.
    token: String,
    /// The card's signature, base64url of 64 bytes.
    card_signature: String,
    /// Required: a retry with the same key and bytes returns the first outcome.
    idempotency_key: String,
}

/// The outcome of a submission. A decline is an outcome, not an error.
pub struct PayPayload(PaymentOutcome);

#[Object]
impl PayPayload {
    async fn status(&self) -> PaymentOutcomeStatus {
        if self.0.evidence.decline_reason.is_some() {
            PaymentOutcomeStatus::Declined
        } else {
            PaymentOutcomeStatus::Authorized
        }
    }
    async fn decline_reason(&self) -> Option<DeclineReason> {
        self.0.decline_reason().map(Into::into)
    }
    async fn payment(&self) -> Option<Payment> {
        self.0.payment.clone().map(Payment)
    }
    /// The evidence record of this outcome.
    async fn evidence_id(&self) -> ID {
        ID(self.0.evidence.id.to_string())
    }
}

/// A recorded decline (its evidence): seen by the merchant and by the issuer the number names.
pub struct PaymentDecline(entities::payment_evidence::Model);

#[Object]
impl PaymentDecline {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn request_id(&self) -> ID {
        encode_id(RecordKind::PaymentRequest, self.0.request_id)
    }
    async fn reason(&self) -> Option<DeclineReason> {
        self.0.decline_reason.map(Into::into)
    }
    /// A resubmission of something already used (audited).
    async fn replay(&self) -> bool {
        self.0.replay
    }
    async fn issuer_key_id(&self) -> i64 {
        self.0.issuer_key_id
    }
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
}

#[Object]
impl DeclinesQuery {
    /// Declined payments at the caller's terminals, or of tokens the caller signed as issuer (the
    /// signature verified).
    async fn payment_declines(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<HubConnection<PaymentDecline>> {
        let page = approval(ctx)
            .declines(
                ctx.principal()?,
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        Ok(page.into_connection(PaymentDecline))
    }

    /// The whole one-time-number token of an evidence record (base64url of its 189 bytes), kept sealed
    /// for the card's issuer: its ADMIN only, and each read is audited. Others get NOT_FOUND.
    async fn evidence_token(
        &self,
        ctx: &Context<'_>,
        evidence_id: ID,
    ) -> async_graphql::Result<String> {
        use base64::Engine as _;
        let id = uuid::Uuid::parse_str(&evidence_id)
            .map_err(|_| crate::error::ApiError::validation("evidenceId", "not an evidence id"))?;
        let token = approval(ctx).evidence_token(ctx.principal()?, id).await?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token))
    }
}

#[derive(Default)]
pub struct DeclinesQuery;

#[derive(Default)]
pub struct ApprovalMutation;

#[Object]
impl ApprovalMutation {
    /// Submits a card's one-time number for a request (the terminal's device only). Verifies everything
    /// before using anything; authorizes at most once per request and per number.
    async fn pay_with_one_time_number(
        &self,
        ctx: &Context<'_>,
        input: PayWithOneTimeNumberInput,
    ) -> async_graphql::Result<PayPayload> {
        let submission = Submission {
            request_id: decode_id("requestId", RecordKind::PaymentRequest, &input.request_id)?,
            token: input.token,
            card_signature: input.card_signature,
        };
        let outcome = approval(ctx)
            .pay(ctx.principal()?, submission, &input.idempotency_key)
            .await?;
        Ok(PayPayload(outcome))
    }
}
