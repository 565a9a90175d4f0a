//! GraphQL for the payment mode: issuer keys and cards over [`PaymentKeysService`], payment requests and
//! one-time-number authorization over [`AuthorizationService`]. Thin: decode, call, wrap.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use entities::{card, issuer_key, payment_request};
use uuid::Uuid;

use super::{
    PaymentKeysService,
    authorization::{AuthorizationService, NewPaymentRequest, PaymentOutcome, Submission},
    service::{KeyStep, NewCard, NewIssuerKey},
};
use crate::{
    error::ApiError,
    financial::graphql::{ORDER, Payment},
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
        scalars::Int64,
    },
    master_data::graphql::DEVICE,
    policy::may_see_challenge,
};

pub const ISSUER_KEY: &str = "IssuerKey";
pub const CARD: &str = "Card";

fn service<'a>(ctx: &Context<'a>) -> &'a PaymentKeysService {
    ctx.data_unchecked::<PaymentKeysService>()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::issuer_key::IssuerKeyStatus")]
pub enum IssuerKeyStatus {
    /// Signs new numbers.
    Active,
    /// Signs no new numbers; numbers issued under it stay valid until their not-after.
    Retired,
    /// Compromised: every number under the key is refused at once; earlier payments are flagged.
    Revoked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::card::CardStatus")]
pub enum CardStatus {
    Active,
    /// Its numbers are declined.
    Blocked,
}

/// A financial provider's issuer public key.
pub struct IssuerKey(pub issuer_key::Model);

#[Object]
impl IssuerKey {
    pub async fn id(&self) -> ID {
        encode_id(ISSUER_KEY, self.0.id)
    }
    /// The key id tokens carry.
    async fn key_id(&self) -> i64 {
        self.0.key_id
    }
    /// Standard base64 of the ed25519 public key.
    async fn public_key(&self) -> String {
        STANDARD.encode(&self.0.public_key)
    }
    /// Number prefix this key signs for.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn not_after(&self) -> DateTime<Utc> {
        self.0.not_after
    }
    async fn status(&self) -> IssuerKeyStatus {
        self.0.status.into()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A card registered by its issuer.
pub struct Card(pub card::Model);

#[Object]
impl Card {
    pub async fn id(&self) -> ID {
        encode_id(CARD, self.0.id)
    }
    /// The card id tokens carry (UUID form of the 16 bytes).
    async fn card_id(&self) -> String {
        self.0.id.to_string()
    }
    async fn public_key(&self) -> String {
        STANDARD.encode(&self.0.public_key)
    }
    async fn status(&self) -> CardStatus {
        self.0.status.into()
    }
    async fn last_four(&self) -> &str {
        &self.0.last_four
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
}

#[derive(Default)]
pub struct PaymentKeysQuery;

#[Object]
impl PaymentKeysQuery {
    /// The caller's issuer keys (financial providers).
    async fn issuer_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<IssuerKey>> {
        let keys = service(ctx).issuer_keys(ctx.principal()?).await?;
        Ok(keys.into_iter().map(IssuerKey).collect())
    }

    /// The cards the caller issued (financial providers).
    async fn cards(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<HubConnection<Card>> {
        let page = service(ctx)
            .cards(
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
        Ok(page.into_connection(Card))
    }
}

#[derive(InputObject)]
pub struct RegisterIssuerKeyInput {
    /// The key id the issuer's tokens carry; never reused with other key material.
    key_id: u32,
    /// Standard base64 of the 32-byte ed25519 public key (weak and non-canonical keys are refused).
    public_key: String,
    /// Card-number prefix (6 to 12 digits) this key signs for; may not overlap another issuer's.
    prefix: String,
    /// End of the key's validity; no number under it outlives this.
    not_after: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct IssuerKeyPayload {
    issuer_key: IssuerKey,
}

#[derive(InputObject)]
pub struct IssuerKeyStepInput {
    id: ID,
}

#[derive(InputObject)]
pub struct RegisterCardInput {
    /// The card id its tokens carry: a UUID, or its 32 hex digits as the issuer tool prints them.
    card_id: String,
    /// Standard base64 of the card's ed25519 public key.
    public_key: String,
    /// Last four digits printed on the card.
    last_four: String,
}

#[derive(SimpleObject)]
pub struct CardPayload {
    card: Card,
}

#[derive(InputObject)]
pub struct CardStepInput {
    id: ID,
}

#[derive(Default)]
pub struct PaymentKeysMutation;

#[Object]
impl PaymentKeysMutation {
    /// Registers an issuer public key (ADMIN of a financial provider).
    async fn register_issuer_key(
        &self,
        ctx: &Context<'_>,
        input: RegisterIssuerKeyInput,
    ) -> async_graphql::Result<IssuerKeyPayload> {
        let new = NewIssuerKey {
            key_id: input.key_id,
            public_key_base64: input.public_key,
            prefix: input.prefix,
            not_after: input.not_after,
        };
        let key = service(ctx)
            .register_issuer_key(ctx.principal()?, new)
            .await?;
        Ok(IssuerKeyPayload {
            issuer_key: IssuerKey(key),
        })
    }

    /// ACTIVE -> RETIRED: the key signs no new numbers.
    async fn retire_issuer_key(
        &self,
        ctx: &Context<'_>,
        input: IssuerKeyStepInput,
    ) -> async_graphql::Result<IssuerKeyPayload> {
        let id = decode_id("id", ISSUER_KEY, &input.id)?;
        let key = service(ctx)
            .step_issuer_key(ctx.principal()?, id, KeyStep::Retire)
            .await?;
        Ok(IssuerKeyPayload {
            issuer_key: IssuerKey(key),
        })
    }

    /// ACTIVE or RETIRED -> REVOKED: every number under the key is refused from now on.
    async fn revoke_issuer_key(
        &self,
        ctx: &Context<'_>,
        input: IssuerKeyStepInput,
    ) -> async_graphql::Result<IssuerKeyPayload> {
        let id = decode_id("id", ISSUER_KEY, &input.id)?;
        let key = service(ctx)
            .step_issuer_key(ctx.principal()?, id, KeyStep::Revoke)
            .await?;
        Ok(IssuerKeyPayload {
            issuer_key: IssuerKey(key),
        })
    }

    /// Registers a card the caller issued.
    async fn register_card(
        &self,
        ctx: &Context<'_>,
        input: RegisterCardInput,
    ) -> async_graphql::Result<CardPayload> {
        let card_id = Uuid::parse_str(input.card_id.trim())
            .map_err(|_| ApiError::validation("cardId", "must be a UUID or 32 hex digits"))?;
        let new = NewCard {
            card_id,
            public_key_base64: input.public_key,
            last_four: input.last_four,
        };
        let card = service(ctx).register_card(ctx.principal()?, new).await?;
        Ok(CardPayload { card: Card(card) })
    }

    /// Blocks a card: its numbers are declined.
    async fn block_card(
        &self,
        ctx: &Context<'_>,
        input: CardStepInput,
    ) -> async_graphql::Result<CardPayload> {
        let id = decode_id("id", CARD, &input.id)?;
        let card = service(ctx)
            .set_card_status(ctx.principal()?, id, entities::card::CardStatus::Blocked)
            .await?;
        Ok(CardPayload { card: Card(card) })
    }

    /// Unblocks a card.
    async fn unblock_card(
        &self,
        ctx: &Context<'_>,
        input: CardStepInput,
    ) -> async_graphql::Result<CardPayload> {
        let id = decode_id("id", CARD, &input.id)?;
        let card = service(ctx)
            .set_card_status(ctx.principal()?, id, entities::card::CardStatus::Active)
            .await?;
        Ok(CardPayload { card: Card(card) })
    }
}

// ---- payment requests and authorization ----

fn authorization<'a>(ctx: &Context<'a>) -> &'a AuthorizationService {
    ctx.data_unchecked::<AuthorizationService>()
}

pub const PAYMENT_REQUEST: &str = "PaymentRequest";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::payment_request::PaymentRequestStatus")]
pub enum PaymentRequestStatus {
    /// Waiting for a tap.
    Open,
    /// Authorized once; later submissions are declined.
    Paid,
    /// Cancelled; late submissions are declined.
    Cancelled,
}

/// Why a payment was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "super::authorization::DeclineReason")]
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

/// A request for a card payment at one terminal.
pub struct PaymentRequest(pub payment_request::Model);

#[Object]
impl PaymentRequest {
    pub async fn id(&self) -> ID {
        encode_id(PAYMENT_REQUEST, self.0.id)
    }
    async fn order_id(&self) -> ID {
        encode_id(ORDER, self.0.order_id)
    }
    async fn terminal_id(&self) -> ID {
        encode_id(DEVICE, self.0.device_id)
    }
    async fn amount_minor(&self) -> Int64 {
        Int64(self.0.amount_minor)
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn status(&self) -> PaymentRequestStatus {
        self.0.status.into()
    }
    /// The 16-byte challenge the card signs, base64url: shown to the terminal's device and to the
    /// member who opened the request, null for everyone else.
    async fn challenge(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let principal = ctx.principal()?;
        Ok(may_see_challenge(principal, &self.0)
            .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.0.challenge)))
    }
    async fn tap_deadline(&self) -> DateTime<Utc> {
        self.0.tap_deadline
    }
    async fn acceptance_deadline(&self) -> DateTime<Utc> {
        self.0.acceptance_deadline
    }
    /// What a card signs, as raw UUIDs (the card protocol carries ids as 16 bytes, never global IDs).
    async fn signing_fields(&self, ctx: &Context<'_>) -> SigningFields {
        SigningFields {
            request_id: self.0.id.to_string(),
            merchant_id: self.0.owner_organization_id.to_string(),
            terminal_id: self.0.device_id.to_string(),
            hub_instance_id: authorization(ctx).hub_instance().to_string(),
        }
    }
}

/// The UUIDs a card signs for a payment request.
#[derive(SimpleObject)]
pub struct SigningFields {
    request_id: String,
    merchant_id: String,
    terminal_id: String,
    hub_instance_id: String,
}

#[derive(InputObject)]
pub struct RequestPaymentInput {
    order_id: ID,
    /// A device (terminal) of the caller's organization.
    terminal_id: ID,
    /// At most the order's unpaid balance.
    amount_minor: Int64,
    /// The order's currency.
    currency: String,
}

#[derive(SimpleObject)]
pub struct PaymentRequestPayload {
    payment_request: PaymentRequest,
}

#[derive(InputObject)]
pub struct CancelPaymentRequestInput {
    id: ID,
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
        encode_id(PAYMENT_REQUEST, self.0.request_id)
    }
    async fn reason(&self) -> Option<DeclineReason> {
        self.0
            .decline_reason
            .as_deref()
            .and_then(super::authorization::DeclineReason::from_code)
            .map(Into::into)
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

#[derive(InputObject, Default)]
pub struct PaymentRequestFilter {
    status: Option<PaymentRequestStatus>,
}

#[derive(Default)]
pub struct AuthorizationQuery;

#[Object]
impl AuthorizationQuery {
    /// Payment requests of the caller's organization; a device sees its own terminal's only.
    async fn payment_requests(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<PaymentRequestFilter>,
    ) -> async_graphql::Result<HubConnection<PaymentRequest>> {
        let status = filter.unwrap_or_default().status.map(Into::into);
        let page = authorization(ctx)
            .payment_requests(
                ctx.principal()?,
                status,
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        Ok(page.into_connection(PaymentRequest))
    }
}

#[Object]
impl AuthorizationDeclinesQuery {
    /// Declined payments at the caller's terminals, or of numbers naming the caller as issuer.
    async fn payment_declines(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<HubConnection<PaymentDecline>> {
        let page = authorization(ctx)
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
}

#[derive(Default)]
pub struct AuthorizationDeclinesQuery;

#[derive(Default)]
pub struct AuthorizationMutation;

#[Object]
impl AuthorizationMutation {
    /// Opens a payment request for an order at a terminal (checkout staff, or the terminal's device).
    async fn request_payment(
        &self,
        ctx: &Context<'_>,
        input: RequestPaymentInput,
    ) -> async_graphql::Result<PaymentRequestPayload> {
        let new = NewPaymentRequest {
            order_id: decode_id("orderId", ORDER, &input.order_id)?,
            terminal_id: decode_id("terminalId", DEVICE, &input.terminal_id)?,
            amount_minor: input.amount_minor.0,
            currency: input.currency,
        };
        let request = authorization(ctx)
            .request_payment(ctx.principal()?, new)
            .await?;
        Ok(PaymentRequestPayload {
            payment_request: PaymentRequest(request),
        })
    }

    /// Cancels an open payment request.
    async fn cancel_payment_request(
        &self,
        ctx: &Context<'_>,
        input: CancelPaymentRequestInput,
    ) -> async_graphql::Result<PaymentRequestPayload> {
        let id = decode_id("id", PAYMENT_REQUEST, &input.id)?;
        let request = authorization(ctx)
            .cancel_payment_request(ctx.principal()?, id)
            .await?;
        Ok(PaymentRequestPayload {
            payment_request: PaymentRequest(request),
        })
    }

    /// Submits a card's one-time number for a request (the terminal's device only). Verifies everything
    /// before using anything; authorizes at most once per request and per number.
    async fn pay_with_one_time_number(
        &self,
        ctx: &Context<'_>,
        input: PayWithOneTimeNumberInput,
    ) -> async_graphql::Result<PayPayload> {
        let submission = Submission {
            request_id: decode_id("requestId", PAYMENT_REQUEST, &input.request_id)?,
            token: input.token,
            card_signature: input.card_signature,
        };
        let outcome = authorization(ctx)
            .pay(ctx.principal()?, submission, &input.idempotency_key)
            .await?;
        Ok(PayPayload(outcome))
    }
}
