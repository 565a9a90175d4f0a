//! The approval of a tap: a device submits a card's one-time number for a payment request; the hub
//! verifies everything before using anything, decides under the device's and the card's locks, and
//! records either the payment or a decline with its evidence, once per idempotency key. The rules, in
//! the order they are checked, are in `docs/payments.md`.

mod evidence;
mod limits;
mod locked;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use card_protocol::{
    HubInstanceId,
    card_signature::verify_payment,
    keys::parse_public_key,
    number::PrefixRange,
    token::{Channel, IssuerKey, Token},
};
use chrono::{DateTime, Duration, Utc};
use entities::{
    card::CardStatus,
    device::DeviceStatus,
    issuer_key::IssuerKeyStatus,
    number_use, order,
    payment::{self, PaymentStatus},
    payment_evidence,
    payment_request::{self, PaymentRequestStatus},
};
use sea_orm::{
    ActiveEnum, ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, IntoActiveModel,
    QueryFilter, QueryTrait,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use self::{
    evidence::{EvidenceRow, key_id_column, stage_evidence},
    limits::RecentPayments,
    locked::{Locked, Wanted},
};
use super::{
    decline::{DeclineReason, is_replay},
    requests::{request_event, signed_fields},
};
use crate::{
    auth::Principal,
    config::PaymentLimits,
    crypto::Vault,
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    db::{constraints, writes::Writes},
    error::{ApiError, ApiResult},
    events::{FINANCIAL, NewEvent, Outbox, stage_event},
    idempotency::{self, IdempotencyKey, Once},
    payments::{
        flags::{self, PaymentFlag},
        number_keys::{NumberHashKeys, NumberHashes},
    },
    policy::{Action, authorize, decline_visible},
    records::RecordKind,
};

/// What a reader agent submits. The token holds the card number: serialized only into a keyed
/// idempotency fingerprint, never printed.
#[derive(Clone, serde::Serialize)]
pub struct Submission {
    pub request_id: Uuid,
    /// base64url.
    pub token: String,
    /// base64url of 64 bytes.
    pub card_signature: String,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// The outcome of a submission, as recorded.
#[derive(Debug, Clone)]
pub struct PaymentOutcome {
    pub evidence: payment_evidence::Model,
    pub payment: Option<payment::Model>,
}

impl PaymentOutcome {
    pub fn decline_reason(&self) -> Option<DeclineReason> {
        self.evidence.decline_reason
    }
}

/// Everything verified about a submission, ready to approve.
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

/// What a decline records.
struct Judged {
    request: Option<payment_request::Model>,
    token: Token,
    signature: [u8; 64],
    hashes: NumberHashes,
    /// The issuer whose signature over the token verified; none when the decline came first.
    verified_issuer: Option<Uuid>,
}

/// What the checks decided.
enum Judgement {
    /// Everything verified: approve, unless a concurrent submission wins the race.
    Approvable(Verified),
    Declined(DeclineReason, Judged),
}

/// Approves or declines submitted taps, and shows declines to those entitled to them.
#[derive(Clone)]
pub struct ApprovalService {
    db: DatabaseConnection,
    outbox: Outbox,
    limits: PaymentLimits,
    hub_instance: HubInstanceId,
    number_hash_keys: NumberHashKeys,
    /// Seals the whole token of each evidence row for its issuer.
    vault: Vault,
}

impl ApprovalService {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        limits: PaymentLimits,
        hub_instance: HubInstanceId,
        number_hash_keys: NumberHashKeys,
        vault: Vault,
    ) -> Self {
        Self {
            db,
            outbox,
            limits,
            hub_instance,
            number_hash_keys,
            vault,
        }
    }

    /// The whole token of an evidence row, for the ADMIN of the issuer whose signature over it
    /// verified; anyone else is answered NOT_FOUND. Every read is written to the audit log (who,
    /// which evidence), never the token.
    pub async fn evidence_token(
        &self,
        principal: &Principal,
        evidence_id: Uuid,
    ) -> ApiResult<Vec<u8>> {
        authorize(principal, Action::ReadCardData)?;
        let evidence = payment_evidence::Entity::find_by_id(evidence_id)
            .filter(payment_evidence::Column::IssuerOrganizationId.eq(principal.organization_id))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("evidence"))?;
        let Some(sealed) = evidence.token_sealed.as_deref() else {
            return Err(ApiError::not_found("evidence token"));
        };
        let token = self
            .vault
            .open(evidence::token_place(evidence.id), sealed)
            .await
            .map_err(ApiError::from)?;
        // Warn level: an audit line must survive the quietest log configuration.
        tracing::warn!(
            target: "hub::audit",
            evidence = %evidence.id,
            organization = %principal.organization_id,
            member = ?principal.member_id(),
            token = ?principal.token_id,
            "whole one-time-number token read by its issuer"
        );
        Ok(token.to_vec())
    }

    /// Declines the caller may see: at its terminals (merchant), or of tokens whose signature by it
    /// (the issuer) verified.
    pub async fn declines(
        &self,
        principal: &Principal,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<payment_evidence::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let select = payment_evidence::Entity::find()
            .filter(payment_evidence::Column::Outcome.eq(payment_evidence::Outcome::Declined))
            .filter(decline_visible(principal));
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
        // Keyed: the evidence holds everything of the submission but the 16 digits, so a plain hash of
        // it would let whoever reads the database try the digits of the issuer's range until it matched.
        let key = IdempotencyKey::new_sensitive(
            device_id,
            "payWithOneTimeNumber",
            idempotency_key,
            &submission,
            &self.vault,
        )?;
        // Under the current key (what is recorded) and every older key still in the ring (checked).
        let hashes = self
            .number_hash_keys
            .hashes(&token.body.issuer, &token.body.number);
        // The same number, signed by its issuer for another card (whose lock this submission does
        // not hold), can be used by a concurrent submission between the history read and the write:
        // the number's unique key then fails the write and rolls everything back, and the one retry
        // finds the use and declines.
        let mut retried = false;
        loop {
            let mark = crate::audit::scope::mark();
            let attempt = self
                .pay_keyed(
                    principal,
                    device_id,
                    &key,
                    submission.clone(),
                    token,
                    signature,
                    hashes.clone(),
                )
                .await;
            match attempt {
                Err(err) if !retried && lost_number_race(&err) => {
                    // The attempt rolled back whole: its payment never existed.
                    crate::audit::scope::restore(mark);
                    retried = true;
                }
                other => return other,
            }
        }
    }

    /// One keyed transaction: claim the key, judge, and write the outcome in one step.
    #[allow(clippy::too_many_arguments)]
    async fn pay_keyed(
        &self,
        principal: &Principal,
        device_id: Uuid,
        key: &IdempotencyKey,
        submission: Submission,
        token: Token,
        signature: [u8; 64],
        hashes: NumberHashes,
    ) -> ApiResult<PaymentOutcome> {
        // A byte-identical resubmission gets the first outcome, a concurrent duplicate a retryable
        // CONFLICT, and a crash or a fault leaves nothing half-done.
        let (this, principal) = (self.clone(), principal.clone());
        let once = idempotency::run_once_staged(
            &self.db,
            key,
            |outcome: &PaymentOutcome| outcome.evidence.id,
            move |txn, now| {
                Box::pin(async move {
                    // One database clock for the whole judgement: the keyed transaction's.
                    let judged = this
                        .judge(
                            txn,
                            &principal,
                            device_id,
                            submission.request_id,
                            token,
                            signature,
                            hashes,
                            now,
                        )
                        .await?;
                    let mut writes = Writes::new();
                    let outcome = match judged {
                        Judgement::Approvable(verified) => {
                            this.stage_approval(&mut writes, &principal, device_id, &verified, now)?
                        }
                        Judgement::Declined(reason, judged) => PaymentOutcome {
                            evidence: this.stage_decline(
                                &mut writes,
                                &principal,
                                device_id,
                                reason,
                                &judged,
                                now,
                            )?,
                            payment: None,
                        },
                    };
                    Ok((outcome, writes))
                })
            },
        )
        .await?;
        match once {
            Once::Ran(outcome) => {
                self.outbox.committed();
                Ok(outcome)
            }
            Once::Replayed(evidence) => self.outcome(evidence).await,
        }
    }

    /// Every check, in the order of `docs/payments.md`, reading only (inside the keyed transaction, at
    /// its database time `now`). A decline carries what it must record.
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
    ) -> ApiResult<Judgement> {
        let issuer = Uuid::from(token.body.issuer);
        let card_id = Uuid::from(token.body.card_id);
        // Every row the checks need, locked until the keyed transaction ends.
        let locked = Locked::read(
            txn,
            &Wanted {
                device_id,
                organization_id: principal.organization_id,
                request_id,
                issuer,
                key_id: i64::from(token.body.key_id),
                card_id,
            },
        )
        .await?;
        let request = locked.request;
        // `issuer` is the token's issuer once its signature verified, and only then: evidence is shown
        // to the issuer it names, so an unverified claim must not decide who sees it.
        let decline = |reason: DeclineReason,
                       request: Option<payment_request::Model>,
                       issuer: Option<Uuid>| {
            Ok(Judgement::Declined(
                reason,
                Judged {
                    request,
                    token,
                    signature,
                    hashes: hashes.clone(),
                    verified_issuer: issuer,
                },
            ))
        };
        let Some(request) = request else {
            return decline(DeclineReason::RequestUnknown, None, None);
        };
        // Issuer key: known, not revoked, not retired past its validity.
        let Some(key) = locked.key else {
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
        if locked.device_status != Some(DeviceStatus::Active) {
            // Revoked while this submission was on its way: stopped like its next request would be.
            tracing::info!(device = %device_id, "payment refused: the device was revoked meanwhile");
            return Err(ApiError::Unauthenticated);
        }
        // The card: registered by the same issuer, not blocked, with exactly this key.
        let Some(card) = locked.card else {
            return decline(DeclineReason::CardUnknown, Some(request), Some(issuer));
        };
        if card.status == CardStatus::Blocked {
            return decline(DeclineReason::CardBlocked, Some(request), Some(issuer));
        }
        if card.public_key.as_slice() != token.body.card_public_key.as_slice() {
            return decline(DeclineReason::CardKeyMismatch, Some(request), Some(issuer));
        }
        // The card's signature over the stored request, never over what the agent sent.
        if verify_payment(
            &token,
            &signed_fields(&request, self.hub_instance),
            &signature,
        )
        .is_err()
        {
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
            &request.owner_organization_id.into(),
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
        // What earlier holders of these locks committed: the number's uses and the limits.
        let velocity_window = Duration::hours(24);
        let recent = RecentPayments::of(
            txn,
            (&hashes, token.body.sequence),
            card_id,
            device_id,
            now - velocity_window,
            now - Duration::seconds(self.limits.distant_terminal_secs).min(velocity_window),
        )
        .await?;
        // Single use (the database enforces it again when the use is written).
        if let Some(reason) = recent.earlier_use() {
            return decline(reason, Some(request), Some(issuer));
        }
        if request.amount_minor > self.limits.contactless_limit_minor {
            return decline(DeclineReason::CvmRequired, Some(request), Some(issuer));
        }
        if let Some(reason) = recent.breach(&self.limits, &request) {
            return decline(reason, Some(request), Some(issuer));
        }
        // The order's unpaid balance, as locked (a payment by another way meanwhile waited, or
        // committed before and is counted).
        let balance = locked.order_balance.ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "payment request {} has no order",
                request.id
            ))
        })?;
        if request.amount_minor > balance {
            return decline(
                DeclineReason::AmountAboveBalance,
                Some(request),
                Some(issuer),
            );
        }
        let flags = recent.flags(&self.limits, token.body.sequence);
        Ok(Judgement::Approvable(Verified {
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

    /// Stages the approval's writes: the request paid, the number used, the order's balance, the
    /// payment, its evidence and events. Every row they change is locked by the judgement, so each
    /// write must touch exactly its row; only the number's unique key can still fail (see `pay`).
    fn stage_approval(
        &self,
        writes: &mut Writes,
        principal: &Principal,
        device_id: Uuid,
        verified: &Verified,
        now: DateTime<Utc>,
    ) -> ApiResult<PaymentOutcome> {
        let payment_id = Uuid::now_v7();
        let request = &verified.request;
        let paid = writes.update(
            payment_request::Entity::update_many()
                .col_expr(
                    payment_request::Column::Status,
                    Expr::value(PaymentRequestStatus::Paid),
                )
                .col_expr(payment_request::Column::PaymentId, Expr::value(payment_id))
                .col_expr(payment_request::Column::UpdatedAt, Expr::value(now))
                .filter(payment_request::Column::Id.eq(request.id))
                .filter(payment_request::Column::Status.eq(PaymentRequestStatus::Open))
                .filter(payment_request::Column::AcceptanceDeadline.gte(now))
                .into_query(),
        );
        writes.expect(paid, 1, "the payment request paid");
        writes.insert(
            number_use::Entity::insert(number_use::ActiveModel {
                number_hash: Set(verified.hashes.current.hash.to_vec()),
                hash_key_id: Set(key_id_column(&verified.hashes.current)),
                card_id: Set(verified.card_id),
                sequence: Set(i64::from(verified.token.body.sequence)),
                payment_id: Set(payment_id),
                used_at: Set(now),
                not_after: Set(Some(verified.not_after)),
            })
            .into_query(),
        );
        let balance = writes.update(
            order::Entity::update_many()
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
                .into_query(),
        );
        writes.expect(balance, 1, "the order's paid balance");
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
            captured_minor: 0,
            refunded_minor: 0,
            captured_at: None,
            released_at: None,
        };
        writes.insert(
            payment::Entity::insert(payment.clone().into_active_model().reset_all()).into_query(),
        );
        let signed_fields = signed_fields(request, self.hub_instance).encode().to_vec();
        let evidence = stage_evidence(
            writes,
            &self.vault,
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
        )?;
        stage_event(
            writes,
            NewEvent {
                event_type: "payment.authorized",
                family: FINANCIAL,
                record_type: RecordKind::Payment,
                record_id: payment_id,
                status: PaymentStatus::Authorized.to_value(),
                owner: request.owner_organization_id,
                parties: vec![verified.issuer_organization],
            },
        );
        // The request's own change, for whoever follows the request (the checkout screen).
        stage_event(
            writes,
            request_event(
                request.id,
                request.owner_organization_id,
                "payment_request.paid",
                PaymentRequestStatus::Paid,
            ),
        );
        Ok(PaymentOutcome {
            evidence,
            payment: Some(payment),
        })
    }

    /// Stages a decline: its evidence, and the request's note of it.
    fn stage_decline(
        &self,
        writes: &mut Writes,
        principal: &Principal,
        device_id: Uuid,
        reason: DeclineReason,
        judged: &Judged,
        now: DateTime<Utc>,
    ) -> ApiResult<payment_evidence::Model> {
        if is_replay(reason) {
            tracing::warn!(reason = reason.to_value(), device = %device_id, "replayed payment submission declined");
        }
        // What the card had to sign: rebuilt from the stored request (none for an unknown request).
        let signed_fields = judged
            .request
            .as_ref()
            .map(|request| signed_fields(request, self.hub_instance).encode().to_vec())
            .unwrap_or_default();
        let evidence = stage_evidence(
            writes,
            &self.vault,
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
        )?;
        if let Some(request) = &judged.request {
            note_decline_on_request(writes, request, reason, now);
        }
        Ok(evidence)
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

/// A tap declined at the request's own terminal (`judge` only finds requests at the submitting device)
/// while the request is open: the request counts it and keeps its reason, and its followers (the
/// checkout screen) are told. A request already paid or cancelled does not change. The judgement
/// holds the request's row locked, so its status as read is its status now.
fn note_decline_on_request(
    writes: &mut Writes,
    request: &payment_request::Model,
    reason: DeclineReason,
    now: DateTime<Utc>,
) {
    if request.status != PaymentRequestStatus::Open {
        return;
    }
    let noted = writes.update(
        payment_request::Entity::update_many()
            .col_expr(
                payment_request::Column::DeclineCount,
                Expr::col(payment_request::Column::DeclineCount).add(1),
            )
            .col_expr(
                payment_request::Column::LastDeclineReason,
                Expr::value(reason),
            )
            .col_expr(payment_request::Column::UpdatedAt, Expr::value(now))
            .filter(payment_request::Column::Id.eq(request.id))
            .filter(payment_request::Column::Status.eq(PaymentRequestStatus::Open))
            .into_query(),
    );
    writes.expect(noted, 1, "the decline noted on its open request");
    stage_event(
        writes,
        request_event(
            request.id,
            request.owner_organization_id,
            "payment_request.declined",
            PaymentRequestStatus::Open,
        ),
    );
}

/// The write of a number failed on its unique key: a concurrent submission used it first.
fn lost_number_race(err: &ApiError) -> bool {
    let ApiError::Internal(cause) = err else {
        return false;
    };
    cause.downcast_ref::<sea_orm::DbErr>().is_some_and(|db| {
        constraints::NUMBER_USE_HASH.violated_by(db)
            || constraints::NUMBER_USE_CARD_SEQUENCE.violated_by(db)
    })
}
