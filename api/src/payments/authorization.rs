//! Payment requests and one-time-number authorization (DESIGN section 8).
//!
//! Everything is verified before anything is used: a decline writes only its own evidence (and
//! completes the idempotency key), never consuming the number, the challenge or the request. An
//! authorization is one transaction: the conditional OPEN -> PAID update that must change exactly one
//! row, the UNIQUE keyed number hash and UNIQUE (card, sequence), the payment, its evidence, its outbox
//! event and the order's balance.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use card_protocol::{
    card_signature::{PaymentRequestFields, verify_payment},
    keys::parse_public_key,
    number::{NumberHash, PrefixRange},
    token::{Channel, IssuerKey, Token},
};
use chrono::{DateTime, Duration, Utc};
use entities::{
    card::{self, CardStatus},
    device::{self, DeviceStatus},
    issuer_key::{self, IssuerKeyStatus},
    number_use,
    order::{self, OrderStatus},
    payment::{self, PaymentStatus},
    payment_evidence,
    payment_request::{self, PaymentRequestStatus},
};
use sea_orm::{
    ActiveEnum, ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait, IntoActiveModel,
    QueryFilter, QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait, Func, LockType, Query},
};
use uuid::Uuid;

use crate::{
    auth::Principal,
    config::PaymentLimits,
    db::{
        constraints::{self, DbResultExt},
        database_now, write_transaction,
    },
    error::{ApiError, ApiResult},
    events::{NewEvent, Outbox, record},
    graphql::relay::{Ordering, Page, PageArgs, SortKey, paginate},
    idempotency::{self, Claim, IdempotencyKey},
    payments::{
        flags::{self, PaymentFlag},
        number_keys::{NumberHashKeys, NumberHashes},
    },
    policy::{Action, authorize},
};

/// Why a payment was declined. Declines are outcomes, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    UnknownIssuerKey,
    IssuerKeyRetired,
    IssuerKeyRevoked,
    BadIssuerSignature,
    NumberOutOfRange,
    NumberExpired,
    DomainRestriction,
    CardUnknown,
    CardBlocked,
    CardKeyMismatch,
    BadCardSignature,
    RequestUnknown,
    RequestCancelled,
    RequestAlreadyPaid,
    PastDeadline,
    AmountAboveBalance,
    NumberAlreadyUsed,
    SequenceReused,
    LimitExceeded,
    CvmRequired,
}

impl DeclineReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownIssuerKey => "UNKNOWN_ISSUER_KEY",
            Self::IssuerKeyRetired => "ISSUER_KEY_RETIRED",
            Self::IssuerKeyRevoked => "ISSUER_KEY_REVOKED",
            Self::BadIssuerSignature => "BAD_ISSUER_SIGNATURE",
            Self::NumberOutOfRange => "NUMBER_OUT_OF_RANGE",
            Self::NumberExpired => "NUMBER_EXPIRED",
            Self::DomainRestriction => "DOMAIN_RESTRICTION",
            Self::CardUnknown => "CARD_UNKNOWN",
            Self::CardBlocked => "CARD_BLOCKED",
            Self::CardKeyMismatch => "CARD_KEY_MISMATCH",
            Self::BadCardSignature => "BAD_CARD_SIGNATURE",
            Self::RequestUnknown => "REQUEST_UNKNOWN",
            Self::RequestCancelled => "REQUEST_CANCELLED",
            Self::RequestAlreadyPaid => "REQUEST_ALREADY_PAID",
            Self::PastDeadline => "PAST_DEADLINE",
            Self::AmountAboveBalance => "AMOUNT_ABOVE_BALANCE",
            Self::NumberAlreadyUsed => "NUMBER_ALREADY_USED",
            Self::SequenceReused => "SEQUENCE_REUSED",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::CvmRequired => "CVM_REQUIRED",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        ALL_REASONS
            .iter()
            .copied()
            .find(|reason| reason.code() == code)
    }

    /// Declines that mean somebody submitted something already used: audited as replays.
    fn is_replay(self) -> bool {
        matches!(
            self,
            Self::RequestAlreadyPaid | Self::NumberAlreadyUsed | Self::SequenceReused
        )
    }
}

const ALL_REASONS: [DeclineReason; 20] = [
    DeclineReason::UnknownIssuerKey,
    DeclineReason::IssuerKeyRetired,
    DeclineReason::IssuerKeyRevoked,
    DeclineReason::BadIssuerSignature,
    DeclineReason::NumberOutOfRange,
    DeclineReason::NumberExpired,
    DeclineReason::DomainRestriction,
    DeclineReason::CardUnknown,
    DeclineReason::CardBlocked,
    DeclineReason::CardKeyMismatch,
    DeclineReason::BadCardSignature,
    DeclineReason::RequestUnknown,
    DeclineReason::RequestCancelled,
    DeclineReason::RequestAlreadyPaid,
    DeclineReason::PastDeadline,
    DeclineReason::AmountAboveBalance,
    DeclineReason::NumberAlreadyUsed,
    DeclineReason::SequenceReused,
    DeclineReason::LimitExceeded,
    DeclineReason::CvmRequired,
];

/// What a checkout asks for.
#[derive(Debug, Clone)]
pub struct NewPaymentRequest {
    pub order_id: Uuid,
    pub terminal_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
}

/// What a reader agent submits.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Submission {
    pub request_id: Uuid,
    /// base64url.
    pub token: String,
    /// base64url of 64 bytes.
    pub card_signature: String,
}

/// The outcome of a submission, as recorded.
#[derive(Debug, Clone)]
pub struct PaymentOutcome {
    pub evidence: payment_evidence::Model,
    pub payment: Option<payment::Model>,
}

impl PaymentOutcome {
    pub fn decline_reason(&self) -> Option<DeclineReason> {
        self.evidence
            .decline_reason
            .as_deref()
            .and_then(DeclineReason::from_code)
    }
}

/// Everything verified about a submission, ready to authorize.
struct Verified {
    request: payment_request::Model,
    token: Token,
    signature: [u8; 64],
    hashes: NumberHashes,
    issuer_organization: Uuid,
    card_id: Uuid,
    /// The number's not-after: how long its hash key must stay in the ring.
    not_after: DateTime<Utc>,
    flags: Vec<PaymentFlag>,
}

/// Authorized payments of a card and of a device within the velocity window, and the card's history
/// the review flags look at.
#[derive(Debug, Default, sea_orm::FromQueryResult)]
struct RecentPayments {
    card_count: i64,
    card_sum: i64,
    /// Distinct terminals other than the submitting one where the card paid.
    card_other_terminals: i64,
    device_sum: i64,
    /// The card's payments at other locations since the distant-terminal window opened.
    card_elsewhere_recently: i64,
    /// The highest sequence the card has used, if any.
    card_last_sequence: Option<i64>,
}

impl RecentPayments {
    /// One query over the card's and the device's payments (both indexed by time), so the work per
    /// payment stays flat however many payments a card has made.
    async fn of(
        txn: &DatabaseTransaction,
        card_id: Uuid,
        device_id: Uuid,
        since: DateTime<Utc>,
        recently: DateTime<Utc>,
    ) -> ApiResult<Self> {
        // The payment's terminal stands at another location than the submitting one: looked up per
        // payment of the card (a handful), never by listing every other terminal.
        let here = Query::select()
            .column(device::Column::LocationId)
            .from(device::Entity)
            .and_where(Expr::col(device::Column::Id).eq(device_id))
            .to_owned();
        let paid_elsewhere = Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(device::Entity)
                .and_where(
                    Expr::col((device::Entity, device::Column::Id))
                        .equals((payment::Entity, payment::Column::DeviceId)),
                )
                .and_where(
                    Expr::col((device::Entity, device::Column::LocationId)).not_in_subquery(here),
                )
                .to_owned(),
        );
        let last_sequence = Query::select()
            .expr(Expr::col(number_use::Column::Sequence).max())
            .from(number_use::Entity)
            .and_where(Expr::col(number_use::Column::CardId).eq(card_id))
            .to_owned();
        let of_card = || Expr::col(payment::Column::CardId).eq(card_id);
        let of_device = || Expr::col(payment::Column::DeviceId).eq(device_id);
        let total = |when: Expr, value: Expr| -> Expr {
            Func::cast_as(
                Func::coalesce([
                    Func::sum(Expr::case(when, value).finally(0)).into(),
                    Expr::val(0),
                ]),
                "BIGINT",
            )
            .into()
        };
        let other_terminal = Expr::case(
            of_card().and(Expr::col(payment::Column::DeviceId).ne(device_id)),
            Expr::col(payment::Column::DeviceId),
        );
        Ok(payment::Entity::find()
            .select_only()
            .column_as(total(of_card(), Expr::val(1)), "card_count")
            .column_as(
                total(of_card(), Expr::col(payment::Column::AmountMinor)),
                "card_sum",
            )
            .column_as(
                Expr::from(Func::count_distinct(other_terminal)),
                "card_other_terminals",
            )
            .column_as(
                total(of_device(), Expr::col(payment::Column::AmountMinor)),
                "device_sum",
            )
            .column_as(
                total(
                    of_card()
                        .and(Expr::col(payment::Column::CreatedAt).gte(recently))
                        .and(paid_elsewhere),
                    Expr::val(1),
                ),
                "card_elsewhere_recently",
            )
            .column_as(Expr::from(last_sequence), "card_last_sequence")
            .filter(Condition::any().add(of_card()).add(of_device()))
            .filter(payment::Column::Status.eq(PaymentStatus::Authorized))
            .filter(payment::Column::CreatedAt.gte(since))
            .into_model::<Self>()
            .one(txn)
            .await?
            .unwrap_or_default())
    }
}

/// What a decline records.
struct Judged {
    request: Option<payment_request::Model>,
    token: Token,
    signature: [u8; 64],
    hashes: NumberHashes,
    /// The issuer whose signature over the token verified; none when the decline came first.
    verified_issuer: Option<Uuid>,
}

const FINANCIAL: &str = "FINANCIAL";

#[derive(Clone)]
pub struct AuthorizationService {
    db: DatabaseConnection,
    outbox: Outbox,
    limits: PaymentLimits,
    hub_instance: [u8; 16],
    number_hash_keys: NumberHashKeys,
}

impl AuthorizationService {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        limits: PaymentLimits,
        hub_instance: [u8; 16],
        number_hash_keys: NumberHashKeys,
    ) -> Self {
        Self {
            db,
            outbox,
            limits,
            hub_instance,
            number_hash_keys,
        }
    }

    pub fn hub_instance(&self) -> Uuid {
        Uuid::from_bytes(self.hub_instance)
    }

    // ---- payment requests ----

    /// Opens a payment request for an order at one of the caller's terminals: one open request per
    /// order, an amount within the unpaid balance, a fresh 128-bit challenge and deadlines.
    pub async fn request_payment(
        &self,
        principal: &Principal,
        input: NewPaymentRequest,
    ) -> ApiResult<payment_request::Model> {
        authorize(principal, Action::RequestPayment)?;
        if principal
            .device_id()
            .is_some_and(|device| device != input.terminal_id)
        {
            return Err(ApiError::Forbidden(
                "a device requests payments for its own terminal only",
            ));
        }
        let order = order::Entity::find_by_id(input.order_id)
            .filter(order::Column::OwnerOrganizationId.eq(principal.organization_id))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("order"))?;
        if !matches!(order.status, OrderStatus::Placed | OrderStatus::Fulfilled) {
            return Err(ApiError::InvalidTransition {
                action: "request a payment",
                reason: format!("the order is {}", order.status.to_value()),
            });
        }
        let balance = order.total_minor - order.paid_minor;
        if input.amount_minor <= 0 || input.amount_minor > balance {
            return Err(ApiError::validation(
                "amountMinor",
                format!("must be between 1 and the unpaid balance {balance}"),
            ));
        }
        if input.currency != order.currency {
            return Err(ApiError::validation(
                "currency",
                "must be the order's currency",
            ));
        }
        let terminal = device::Entity::find_by_id(input.terminal_id)
            .filter(device::Column::OwnerOrganizationId.eq(principal.organization_id))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("terminal"))?;
        if terminal.status != DeviceStatus::Active {
            return Err(ApiError::validation(
                "terminalId",
                "the terminal is revoked",
            ));
        }
        let mut challenge = [0u8; 16];
        getrandom::fill(&mut challenge)
            .map_err(|err| ApiError::Internal(anyhow::anyhow!("OS random generator: {err}")))?;
        let limits = self.limits.clone();
        let owner = principal.organization_id;
        let requester = principal.member_id();
        let id = Uuid::now_v7();
        let opened = write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let now = database_now(txn).await?;
                let tap_deadline = now + Duration::seconds(limits.tap_deadline_secs);
                let request = payment_request::Model {
                    id,
                    owner_organization_id: owner,
                    order_id: input.order_id,
                    device_id: input.terminal_id,
                    amount_minor: input.amount_minor,
                    currency: input.currency,
                    challenge: challenge.to_vec(),
                    status: PaymentRequestStatus::Open,
                    tap_deadline,
                    acceptance_deadline: tap_deadline
                        + Duration::seconds(limits.offline_grace_secs),
                    payment_id: None,
                    created_at: now,
                    updated_at: now,
                    requested_by_member_id: requester,
                };
                payment_request::Entity::insert(request.clone().into_active_model().reset_all())
                    .exec_without_returning(txn)
                    .await
                    .map_err(ApiError::from)?;
                record(
                    txn,
                    request_event(
                        id,
                        owner,
                        "payment_request.opened",
                        PaymentRequestStatus::Open,
                    ),
                )
                .await?;
                Ok(request)
            })
        })
        .await?;
        self.outbox.committed();
        Ok(opened)
    }

    /// OPEN -> CANCELLED; late submissions for it are declined.
    pub async fn cancel_payment_request(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> ApiResult<payment_request::Model> {
        authorize(principal, Action::RequestPayment)?;
        let request = self.payment_request(principal, id).await?;
        let owner = principal.organization_id;
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let changed = payment_request::Entity::update_many()
                    .col_expr(
                        payment_request::Column::Status,
                        Expr::value(PaymentRequestStatus::Cancelled),
                    )
                    .col_expr(payment_request::Column::UpdatedAt, Expr::value(Utc::now()))
                    .filter(payment_request::Column::Id.eq(id))
                    .filter(payment_request::Column::Status.eq(PaymentRequestStatus::Open))
                    .exec(txn)
                    .await?;
                if changed.rows_affected != 1 {
                    return Err(ApiError::InvalidTransition {
                        action: "cancel the payment request",
                        reason: format!("it is {}", request.status.to_value()),
                    });
                }
                record(
                    txn,
                    request_event(
                        id,
                        owner,
                        "payment_request.cancelled",
                        PaymentRequestStatus::Cancelled,
                    ),
                )
                .await
            })
        })
        .await?;
        self.outbox.committed();
        self.payment_request(principal, id).await
    }

    /// Payment requests the caller may see: its organization's, or a device's own terminal's.
    fn visible_requests(principal: &Principal) -> Condition {
        let mut condition = Condition::all()
            .add(payment_request::Column::OwnerOrganizationId.eq(principal.organization_id));
        if let Some(device) = principal.device_id() {
            condition = condition.add(payment_request::Column::DeviceId.eq(device));
        }
        condition
    }

    pub async fn payment_request(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> ApiResult<payment_request::Model> {
        authorize(principal, Action::RequestPayment)
            .or_else(|_| authorize(principal, Action::ReadOwnOrganization))?;
        payment_request::Entity::find_by_id(id)
            .filter(Self::visible_requests(principal))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("payment request"))
    }

    pub async fn payment_requests(
        &self,
        principal: &Principal,
        status: Option<PaymentRequestStatus>,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<payment_request::Model>> {
        authorize(principal, Action::RequestPayment)
            .or_else(|_| authorize(principal, Action::ReadOwnOrganization))?;
        let mut select = payment_request::Entity::find().filter(Self::visible_requests(principal));
        if let Some(status) = status {
            select = select.filter(payment_request::Column::Status.eq(status));
        }
        let ordering = Ordering {
            name: "createdAt",
            column: payment_request::Column::CreatedAt,
            descending: false,
            key: |r: &payment_request::Model| SortKey::Time(r.created_at),
        };
        paginate(
            &self.db,
            select,
            payment_request::Column::Id,
            |r| r.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    /// Declines the caller may see: at its terminals (merchant) or of numbers naming it as issuer.
    pub async fn declines(
        &self,
        principal: &Principal,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<payment_evidence::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let select = payment_evidence::Entity::find()
            .filter(payment_evidence::Column::Outcome.eq("DECLINED"))
            .filter(
                Condition::any()
                    .add(
                        payment_evidence::Column::OwnerOrganizationId.eq(principal.organization_id),
                    )
                    .add(
                        payment_evidence::Column::IssuerOrganizationId
                            .eq(principal.organization_id),
                    ),
            );
        let ordering = Ordering {
            name: "recordedAt",
            column: payment_evidence::Column::RecordedAt,
            descending: false,
            key: |e: &payment_evidence::Model| SortKey::Time(e.recorded_at),
        };
        paginate(
            &self.db,
            select,
            payment_evidence::Column::Id,
            |e| e.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    // ---- authorization ----

    /// Judges a submission from the terminal's device. Malformed input is an error; everything else is
    /// an outcome (AUTHORIZED, or DECLINED with its reason), recorded once per idempotency key.
    pub async fn pay(
        &self,
        principal: &Principal,
        submission: Submission,
        idempotency_key: &str,
    ) -> ApiResult<PaymentOutcome> {
        authorize(principal, Action::SubmitPayment)?;
        let device_id = principal.device_id().ok_or(ApiError::Forbidden(
            "only the terminal's device submits card payments",
        ))?;
        let token_bytes = URL_SAFE_NO_PAD
            .decode(submission.token.trim())
            .map_err(|_| ApiError::validation("token", "must be base64url"))?;
        let token = Token::decode(&token_bytes)
            .map_err(|err| ApiError::validation("token", err.to_string()))?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(submission.card_signature.trim())
            .ok()
            .and_then(|bytes| bytes.as_slice().try_into().ok())
            .ok_or_else(|| {
                ApiError::validation("cardSignature", "must be base64url of 64 bytes")
            })?;
        let key = IdempotencyKey::new(
            device_id,
            "payWithOneTimeNumber",
            idempotency_key,
            &submission,
        )?;
        // The keyed transaction: a byte-identical resubmission gets the first outcome, a concurrent
        // duplicate a retryable CONFLICT, and a crash leaves nothing half-done.
        let txn = match idempotency::claim(&self.db, &key).await? {
            Claim::Replay(evidence) => return self.outcome(evidence).await,
            Claim::Fresh(txn) => txn,
        };
        // Under the current key (what is recorded) and every older key still in the ring (checked).
        let hashes = self
            .number_hash_keys
            .hashes(&token.body.issuer, &token.body.number);
        let decided = async {
            // One database clock for the whole judgement: the keyed transaction's.
            let now = database_now(&txn).await?;
            let outcome = match self
                .judge(
                    &txn,
                    principal,
                    device_id,
                    submission.request_id,
                    token,
                    signature,
                    hashes,
                    now,
                )
                .await?
            {
                Ok(verified) => {
                    self.authorize_or_decline(&txn, principal, device_id, verified, now)
                        .await?
                }
                Err((reason, judged)) => PaymentOutcome {
                    evidence: self
                        .insert_decline(&txn, principal, device_id, reason, &judged, now)
                        .await?,
                    payment: None,
                },
            };
            idempotency::complete(&txn, &key, outcome.evidence.id).await?;
            Ok::<_, ApiError>(outcome)
        }
        .await;
        match decided {
            Ok(outcome) => {
                txn.commit().await?;
                self.outbox.committed();
                Ok(outcome)
            }
            Err(err) => {
                if let Err(rollback) = txn.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed; the connection discards the transaction");
                }
                Err(err)
            }
        }
    }

    /// Every check, in the order of DESIGN section 8, reading only (inside the keyed transaction, at
    /// its database time `now`). `Err` on the inner result is a decline with what it must record.
    #[allow(clippy::too_many_arguments)]
    async fn judge(
        &self,
        txn: &DatabaseTransaction,
        principal: &Principal,
        device_id: Uuid,
        request_id: Uuid,
        token: Token,
        signature: [u8; 64],
        hashes: NumberHashes,
        now: DateTime<Utc>,
    ) -> ApiResult<Result<Verified, (DeclineReason, Judged)>> {
        let request = payment_request::Entity::find_by_id(request_id)
            .filter(payment_request::Column::DeviceId.eq(device_id))
            .filter(payment_request::Column::OwnerOrganizationId.eq(principal.organization_id))
            .one(txn)
            .await?;
        // `issuer` is the token's issuer once its signature verified, and only then: evidence is shown
        // to the issuer it names, so an unverified claim must not decide who sees it.
        let decline = |reason: DeclineReason,
                       request: Option<payment_request::Model>,
                       issuer: Option<Uuid>| {
            Ok(Err((
                reason,
                Judged {
                    request,
                    token,
                    signature,
                    hashes: hashes.clone(),
                    verified_issuer: issuer,
                },
            )))
        };
        let Some(request) = request else {
            return decline(DeclineReason::RequestUnknown, None, None);
        };
        let issuer = Uuid::from_bytes(token.body.issuer);
        // Issuer key: known, not revoked, not retired past its validity.
        let key = issuer_key::Entity::find()
            .filter(issuer_key::Column::OwnerOrganizationId.eq(issuer))
            .filter(issuer_key::Column::KeyId.eq(i64::from(token.body.key_id)))
            .one(txn)
            .await?;
        let Some(key) = key else {
            return decline(DeclineReason::UnknownIssuerKey, Some(request), None);
        };
        match key.status {
            IssuerKeyStatus::Revoked => {
                return decline(DeclineReason::IssuerKeyRevoked, Some(request), None);
            }
            IssuerKeyStatus::Retired if now > key.not_after => {
                return decline(DeclineReason::IssuerKeyRetired, Some(request), None);
            }
            _ => {}
        }
        // The issuer's signature and range.
        let public_key = key
            .public_key
            .as_slice()
            .try_into()
            .ok()
            .and_then(|bytes| parse_public_key(bytes).ok());
        let range = PrefixRange::new(&key.prefix).ok();
        let (Some(public_key), Some(range)) = (public_key, range) else {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "issuer key {} is stored malformed",
                key.id
            )));
        };
        let registered = IssuerKey {
            issuer: token.body.issuer,
            key_id: token.body.key_id,
            public_key,
            range,
        };
        if let Err(err) = token.verify(&registered) {
            let reason = match err {
                card_protocol::ProtocolError::InvalidNumber(_) => DeclineReason::NumberOutOfRange,
                _ => DeclineReason::BadIssuerSignature,
            };
            return decline(reason, Some(request), None);
        }
        // From here on the submission holds its device, then its card, until the keyed transaction
        // ends: a card blocked or a device revoked meanwhile is seen, and the limits below count
        // every payment an earlier holder committed.
        lock_device(txn, device_id).await?;
        // The card: registered by the same issuer, not blocked, with exactly this key.
        let card_id = Uuid::from_bytes(token.body.card_id);
        let card = card::Entity::find_by_id(card_id)
            .filter(card::Column::IssuerOrganizationId.eq(issuer))
            .lock(LockType::NoKeyUpdate)
            .one(txn)
            .await?;
        let Some(card) = card else {
            return decline(DeclineReason::CardUnknown, Some(request), Some(issuer));
        };
        if card.status == CardStatus::Blocked {
            return decline(DeclineReason::CardBlocked, Some(request), Some(issuer));
        }
        if card.public_key.as_slice() != token.body.card_public_key.as_slice() {
            return decline(DeclineReason::CardKeyMismatch, Some(request), Some(issuer));
        }
        // The card's signature over the stored request, never over what the agent sent.
        if verify_payment(&token, &self.signed_fields(&request), &signature).is_err() {
            return decline(DeclineReason::BadCardSignature, Some(request), Some(issuer));
        }
        let not_after = DateTime::<Utc>::from_timestamp(token.body.not_after as i64, 0)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if now > not_after || not_after > key.not_after {
            return decline(DeclineReason::NumberExpired, Some(request), Some(issuer));
        }
        let currency: [u8; 3] = request.currency.as_bytes().try_into().unwrap_or([0; 3]);
        let amount = u64::try_from(request.amount_minor).unwrap_or(0);
        if !token.body.restrictions.permit(
            amount,
            &currency,
            request.owner_organization_id.as_bytes(),
            Channel::ContactlessPresent,
        ) {
            return decline(
                DeclineReason::DomainRestriction,
                Some(request),
                Some(issuer),
            );
        }
        // The request itself, judged by the database clock.
        match request.status {
            PaymentRequestStatus::Cancelled => {
                return decline(DeclineReason::RequestCancelled, Some(request), Some(issuer));
            }
            PaymentRequestStatus::Paid => {
                return decline(
                    DeclineReason::RequestAlreadyPaid,
                    Some(request),
                    Some(issuer),
                );
            }
            PaymentRequestStatus::Open => {}
        }
        let late = now > request.tap_deadline;
        if now > request.acceptance_deadline
            || (late && request.amount_minor > self.limits.offline_floor_minor)
        {
            return decline(DeclineReason::PastDeadline, Some(request), Some(issuer));
        }
        // Single use (the database enforces it again in the authorizing transaction).
        if let Some(reason) = earlier_use(txn, &hashes, card_id, token.body.sequence).await? {
            return decline(reason, Some(request), Some(issuer));
        }
        if request.amount_minor > self.limits.contactless_limit_minor {
            return decline(DeclineReason::CvmRequired, Some(request), Some(issuer));
        }
        let velocity_window = Duration::hours(24);
        let recent = RecentPayments::of(
            txn,
            card_id,
            device_id,
            now - velocity_window,
            now - Duration::seconds(self.limits.distant_terminal_secs).min(velocity_window),
        )
        .await?;
        if let Some(reason) = self.limit_breach(&request, &recent) {
            return decline(reason, Some(request), Some(issuer));
        }
        let flags = self.review_flags(&recent, token.body.sequence);
        Ok(Ok(Verified {
            request,
            token,
            signature,
            hashes,
            issuer_organization: issuer,
            card_id,
            not_after,
            flags,
        }))
    }

    /// Card velocity (CVM_REQUIRED) and device cap (LIMIT_EXCEEDED).
    fn limit_breach(
        &self,
        request: &payment_request::Model,
        recent: &RecentPayments,
    ) -> Option<DeclineReason> {
        let limits = &self.limits;
        // Terminals other than this one, plus this one.
        if recent.card_count as u64 >= limits.card_velocity_count
            || recent.card_sum + request.amount_minor > limits.card_velocity_sum_minor
            || recent.card_other_terminals as u64 + 1 > limits.card_velocity_terminals
        {
            return Some(DeclineReason::CvmRequired);
        }
        if recent.device_sum + request.amount_minor > limits.device_cap_minor {
            return Some(DeclineReason::LimitExceeded);
        }
        None
    }

    /// What an authorization should be reviewed for (it is authorized all the same).
    fn review_flags(&self, recent: &RecentPayments, sequence: u32) -> Vec<PaymentFlag> {
        let mut flags = Vec::new();
        let last = recent.card_last_sequence.unwrap_or(0);
        if i64::from(sequence) > last + i64::from(self.limits.sequence_gap_window) {
            flags.push(PaymentFlag::SequenceGap);
        }
        if recent.card_elsewhere_recently > 0 {
            flags.push(PaymentFlag::DistantTerminals);
        }
        flags
    }

    fn signed_fields(&self, request: &payment_request::Model) -> PaymentRequestFields {
        PaymentRequestFields {
            request_id: *request.id.as_bytes(),
            challenge: request.challenge.as_slice().try_into().unwrap_or([0; 16]),
            amount_minor: u64::try_from(request.amount_minor).unwrap_or(0),
            currency: request.currency.as_bytes().try_into().unwrap_or([0; 3]),
            merchant: *request.owner_organization_id.as_bytes(),
            terminal: *request.device_id.as_bytes(),
            hub_instance: self.hub_instance,
        }
    }

    /// Authorizes inside a savepoint of the keyed transaction; if another submission won a race
    /// meanwhile (the request is paid, the number or sequence used), rolls the savepoint back and
    /// records a decline instead.
    async fn authorize_or_decline(
        &self,
        txn: &DatabaseTransaction,
        principal: &Principal,
        device_id: Uuid,
        verified: Verified,
        now: DateTime<Utc>,
    ) -> ApiResult<PaymentOutcome> {
        let savepoint = txn.begin().await?;
        let lost = match self
            .authorize_writes(&savepoint, principal, device_id, &verified, now)
            .await
        {
            Ok(Ok(outcome)) => {
                savepoint.commit().await?;
                return Ok(outcome);
            }
            Ok(Err(reason)) => reason,
            Err(err) => {
                savepoint.rollback().await?;
                return Err(err);
            }
        };
        savepoint.rollback().await?;
        let judged = Judged {
            request: Some(verified.request),
            token: verified.token,
            signature: verified.signature,
            hashes: verified.hashes,
            verified_issuer: Some(verified.issuer_organization),
        };
        // The winner has committed: tell a used number from a reused sequence or a paid request.
        let reason = explain_lost_race(txn, lost, &judged).await?;
        Ok(PaymentOutcome {
            evidence: self
                .insert_decline(txn, principal, device_id, reason, &judged, now)
                .await?,
            payment: None,
        })
    }

    /// The authorization's writes. `Ok(Err(reason))`: a concurrent submission got there first.
    async fn authorize_writes(
        &self,
        txn: &DatabaseTransaction,
        principal: &Principal,
        device_id: Uuid,
        verified: &Verified,
        now: DateTime<Utc>,
    ) -> ApiResult<Result<PaymentOutcome, DeclineReason>> {
        let payment_id = Uuid::now_v7();
        let request = &verified.request;
        let paid = payment_request::Entity::update_many()
            .col_expr(
                payment_request::Column::Status,
                Expr::value(PaymentRequestStatus::Paid),
            )
            .col_expr(payment_request::Column::PaymentId, Expr::value(payment_id))
            .col_expr(payment_request::Column::UpdatedAt, Expr::value(now))
            .filter(payment_request::Column::Id.eq(request.id))
            .filter(payment_request::Column::Status.eq(PaymentRequestStatus::Open))
            .filter(payment_request::Column::AcceptanceDeadline.gte(now))
            .exec(txn)
            .await?;
        if paid.rows_affected != 1 {
            return Ok(Err(DeclineReason::RequestAlreadyPaid));
        }
        let used = number_use::Entity::insert(number_use::ActiveModel {
            number_hash: Set(verified.hashes.current.hash.to_vec()),
            hash_key_id: Set(key_id_column(&verified.hashes.current)),
            card_id: Set(verified.card_id),
            sequence: Set(i64::from(verified.token.body.sequence)),
            payment_id: Set(payment_id),
            used_at: Set(now),
            not_after: Set(Some(verified.not_after)),
        })
        .exec_without_returning(txn)
        .await
        // Only the number's or the card sequence's key is a lost race; any other error aborts the
        // keyed transaction (no decline recorded, the key stays free for a retry).
        .on_unique(
            &[
                &constraints::NUMBER_USE_HASH,
                &constraints::NUMBER_USE_CARD_SEQUENCE,
            ],
            DeclineReason::NumberAlreadyUsed,
        )?;
        if let Err(lost) = used {
            return Ok(Err(lost));
        }
        let balance = order::Entity::update_many()
            .col_expr(
                order::Column::PaidMinor,
                Expr::col(order::Column::PaidMinor).add(request.amount_minor),
            )
            .col_expr(
                order::Column::Version,
                Expr::col(order::Column::Version).add(1),
            )
            .filter(order::Column::Id.eq(request.order_id))
            .filter(
                Expr::col(order::Column::PaidMinor)
                    .add(request.amount_minor)
                    .lte(Expr::col(order::Column::TotalMinor)),
            )
            .exec(txn)
            .await?;
        if balance.rows_affected != 1 {
            return Ok(Err(DeclineReason::AmountAboveBalance));
        }
        let payment = payment::Model {
            id: payment_id,
            owner_organization_id: request.owner_organization_id,
            order_id: request.order_id,
            invoice_id: None,
            amount_minor: request.amount_minor,
            currency: request.currency.clone(),
            status: PaymentStatus::Authorized,
            issuer_organization_id: Some(verified.issuer_organization),
            request_id: Some(request.id),
            card_id: Some(verified.card_id),
            device_id: Some(device_id),
            flag: flags::store(&verified.flags),
            created_at: now,
            updated_at: now,
        };
        payment::Entity::insert(payment.clone().into_active_model().reset_all())
            .exec_without_returning(txn)
            .await?;
        let signed_fields = self.signed_fields(request).encode().to_vec();
        let evidence = insert_evidence(
            txn,
            EvidenceRow {
                request_id: request.id,
                owner: Some(request.owner_organization_id),
                issuer: Some(verified.issuer_organization),
                payment_id: Some(payment_id),
                reason: None,
                token: &verified.token,
                signature: &verified.signature,
                hash: &verified.hashes.current,
                signed_fields: &signed_fields,
                device_id,
                jwt_id: principal.token_id,
                now,
            },
        )
        .await?;
        record(
            txn,
            NewEvent {
                event_type: "payment.authorized",
                family: FINANCIAL,
                record_type: "Payment",
                record_id: payment_id,
                status: PaymentStatus::Authorized.to_value(),
                owner: request.owner_organization_id,
                parties: vec![verified.issuer_organization],
            },
        )
        .await?;
        Ok(Ok(PaymentOutcome {
            evidence,
            payment: Some(payment),
        }))
    }

    /// Records a decline in the keyed transaction: its evidence, nothing else.
    async fn insert_decline(
        &self,
        txn: &DatabaseTransaction,
        principal: &Principal,
        device_id: Uuid,
        reason: DeclineReason,
        judged: &Judged,
        now: DateTime<Utc>,
    ) -> ApiResult<payment_evidence::Model> {
        if reason.is_replay() {
            tracing::warn!(reason = reason.code(), device = %device_id, "replayed payment submission declined");
        }
        // What the card had to sign: rebuilt from the stored request (none for an unknown request).
        let signed_fields = judged
            .request
            .as_ref()
            .map(|request| self.signed_fields(request).encode().to_vec())
            .unwrap_or_default();
        insert_evidence(
            txn,
            EvidenceRow {
                request_id: judged.request.as_ref().map_or(Uuid::nil(), |r| r.id),
                owner: judged.request.as_ref().map(|r| r.owner_organization_id),
                issuer: judged.verified_issuer,
                payment_id: None,
                reason: Some(reason),
                token: &judged.token,
                signature: &judged.signature,
                hash: &judged.hashes.current,
                signed_fields: &signed_fields,
                device_id,
                jwt_id: principal.token_id,
                now,
            },
        )
        .await
    }

    /// A recorded outcome, read back for a replayed submission.
    async fn outcome(&self, evidence_id: Uuid) -> ApiResult<PaymentOutcome> {
        let evidence = payment_evidence::Entity::find_by_id(evidence_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("evidence {evidence_id} is missing"))
            })?;
        let payment = match evidence.payment_id {
            Some(id) => payment::Entity::find_by_id(id).one(&self.db).await?,
            None => None,
        };
        Ok(PaymentOutcome { evidence, payment })
    }
}

/// Locks the submitting device's row until the keyed transaction ends, and checks that the device is
/// still active. With the card's row, locked next, this serializes the judgements of one device and of
/// one card, so the limits count every payment committed by an earlier holder and concurrent taps
/// cannot beat a limit. Always the device first, then the card (a transaction holds one device), so two
/// submissions never wait on each other in a cycle. `FOR NO KEY UPDATE` leaves the foreign-key checks
/// of unrelated inserts alone. SQLite ignores the clause: its write transactions are IMMEDIATE, one
/// writer at a time already.
async fn lock_device(txn: &DatabaseTransaction, device_id: Uuid) -> ApiResult<()> {
    let status = device::Entity::find_by_id(device_id)
        .select_only()
        .column(device::Column::Status)
        .lock(LockType::NoKeyUpdate)
        .into_tuple::<DeviceStatus>()
        .one(txn)
        .await?;
    match status {
        Some(DeviceStatus::Active) => Ok(()),
        // Revoked while this submission was on its way: stopped like its next request would be.
        _ => {
            tracing::info!(device = %device_id, "payment refused: the device was revoked meanwhile");
            Err(ApiError::Unauthenticated)
        }
    }
}

/// Why a number cannot be used: it was used (same hash), or another number took its card sequence.
/// One query, so a concurrent commit cannot make the two checks disagree.
async fn earlier_use(
    txn: &DatabaseTransaction,
    hashes: &NumberHashes,
    card_id: Uuid,
    sequence: u32,
) -> ApiResult<Option<DeclineReason>> {
    let uses = number_use::Entity::find()
        .filter(
            Condition::any()
                .add(
                    number_use::Column::NumberHash
                        .is_in(hashes.all().map(|hash| hash.hash.to_vec())),
                )
                .add(
                    Condition::all()
                        .add(number_use::Column::CardId.eq(card_id))
                        .add(number_use::Column::Sequence.eq(i64::from(sequence))),
                ),
        )
        .all(txn)
        .await?;
    let same_number = |used: &number_use::Model| {
        hashes
            .all()
            .any(|hash| used.hash_key_id == key_id_column(hash) && used.number_hash == hash.hash)
    };
    Ok(if uses.iter().any(same_number) {
        Some(DeclineReason::NumberAlreadyUsed)
    } else if uses.is_empty() {
        None
    } else {
        Some(DeclineReason::SequenceReused)
    })
}

/// After a lost race the winner has committed: say what it took.
async fn explain_lost_race(
    txn: &DatabaseTransaction,
    reason: DeclineReason,
    judged: &Judged,
) -> ApiResult<DeclineReason> {
    if reason != DeclineReason::NumberAlreadyUsed {
        return Ok(reason);
    }
    let card_id = Uuid::from_bytes(judged.token.body.card_id);
    Ok(
        earlier_use(txn, &judged.hashes, card_id, judged.token.body.sequence)
            .await?
            .unwrap_or(reason),
    )
}

/// Key ids are at most 2^31 - 1 (the ring refuses more), so they fit the integer column.
fn key_id_column(hash: &NumberHash) -> i32 {
    i32::try_from(hash.key_id).unwrap_or(i32::MAX)
}

struct EvidenceRow<'a> {
    request_id: Uuid,
    owner: Option<Uuid>,
    /// The issuer shown the evidence: only one whose signature verified.
    issuer: Option<Uuid>,
    payment_id: Option<Uuid>,
    reason: Option<DeclineReason>,
    token: &'a Token,
    signature: &'a [u8; 64],
    hash: &'a NumberHash,
    signed_fields: &'a [u8],
    device_id: Uuid,
    jwt_id: Option<Uuid>,
    now: DateTime<Utc>,
}

/// Appends evidence. The token is kept with its 16 digits zeroed: the number lives only as its hash.
async fn insert_evidence(
    txn: &DatabaseTransaction,
    row: EvidenceRow<'_>,
) -> ApiResult<payment_evidence::Model> {
    let mut redacted = row.token.encode().to_vec();
    redacted[21..37].fill(0);
    let evidence = payment_evidence::Model {
        id: Uuid::now_v7(),
        request_id: row.request_id,
        owner_organization_id: row.owner,
        issuer_organization_id: row.issuer,
        payment_id: row.payment_id,
        outcome: if row.reason.is_some() {
            "DECLINED"
        } else {
            "AUTHORIZED"
        }
        .to_owned(),
        decline_reason: row.reason.map(|r| r.code().to_owned()),
        replay: row.reason.is_some_and(DeclineReason::is_replay),
        redacted_token: redacted,
        number_hash: row.hash.hash.to_vec(),
        hash_key_id: key_id_column(row.hash),
        card_signature: row.signature.to_vec(),
        signed_fields: row.signed_fields.to_vec(),
        device_id: row.device_id,
        jwt_id: row.jwt_id,
        issuer_key_id: i64::from(row.token.body.key_id),
        recorded_at: row.now,
    };
    payment_evidence::Entity::insert(evidence.clone().into_active_model().reset_all())
        .exec_without_returning(txn)
        .await?;
    Ok(evidence)
}

fn request_event(
    id: Uuid,
    owner: Uuid,
    event_type: &'static str,
    status: PaymentRequestStatus,
) -> NewEvent {
    NewEvent {
        event_type,
        family: FINANCIAL,
        record_type: "PaymentRequest",
        record_id: id,
        status: status.to_value(),
        owner,
        parties: Vec::new(),
    }
}
