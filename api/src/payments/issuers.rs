//! Issuer keys and cards: registered by financial providers, checked strictly (canonical keys, no
//! small-order points, disjoint number ranges), visible to their issuer only.

use base64::{Engine, engine::general_purpose::STANDARD};
use card_protocol::{keys::parse_public_key, number::PrefixRange};
use chrono::{DateTime, Utc};
use entities::{
    card::{self, CardStatus},
    issuer_key::{self, IssuerKeyStatus},
    payment, payment_evidence,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    auth::Principal,
    db::constraints::violates_constraint,
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    db::{serialize_on, write_transaction},
    error::{ApiError, ApiResult},
    payments::flags::{self, PaymentFlag},
    policy::{Action, authorize},
};

/// Key of the PostgreSQL advisory lock under which issuer keys are registered.
const ISSUER_RANGES_LOCK_KEY: i64 = 0x4943_485f_5052_4658; // "ICH_PRFX"

pub struct NewIssuerKey {
    pub key_id: u32,
    pub public_key_base64: String,
    pub prefix: String,
    pub not_after: DateTime<Utc>,
}

pub struct NewCard {
    pub card_id: Uuid,
    pub public_key_base64: String,
    pub last_four: String,
}

/// Steps of the issuer-key life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStep {
    Retire,
    Revoke,
}

#[derive(Clone)]
pub struct PaymentKeysService {
    db: DatabaseConnection,
}

fn strict_key(field: &'static str, base64: &str) -> ApiResult<Vec<u8>> {
    let bytes: [u8; 32] = STANDARD
        .decode(base64.trim())
        .ok()
        .and_then(|bytes| bytes.as_slice().try_into().ok())
        .ok_or_else(|| {
            ApiError::validation(field, "must be standard base64 of a 32-byte ed25519 key")
        })?;
    parse_public_key(&bytes).map_err(|err| ApiError::validation(field, err.to_string()))?;
    Ok(bytes.to_vec())
}

impl PaymentKeysService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Registers an issuer public key (ADMIN of a financial provider). Its number prefix may not
    /// overlap another issuer's, and a key id is never reused with other key material.
    pub async fn register_issuer_key(
        &self,
        principal: &Principal,
        input: NewIssuerKey,
    ) -> ApiResult<issuer_key::Model> {
        authorize(principal, Action::ManageKeys)?;
        let public_key = strict_key("publicKey", &input.public_key_base64)?;
        let range = PrefixRange::new(input.prefix.trim())
            .map_err(|err| ApiError::validation("prefix", err.to_string()))?;
        if input.not_after <= Utc::now() {
            return Err(ApiError::validation("notAfter", "must be in the future"));
        }
        let owner = principal.organization_id;
        let prefix = range.prefix().to_owned();
        let model = issuer_key::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_organization_id: Set(owner),
            key_id: Set(i64::from(input.key_id)),
            public_key: Set(public_key),
            prefix: Set(prefix.clone()),
            not_after: Set(input.not_after),
            status: Set(IssuerKeyStatus::Active),
            version: Set(1),
            created_at: Set(Utc::now()),
            updated_at: Set(Utc::now()),
        };
        // Registrations take turns (an advisory lock on PostgreSQL, the single writer on SQLite), so the
        // check sees every committed range and gives the refusal its message. The database holds the
        // invariant all the same: the exclusion constraint refuses any overlapping insert. Without the
        // turns, two concurrent overlapping inserts wait on each other inside that constraint's check
        // and one of them dies as a deadlock instead of a CONFLICT.
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                serialize_on(txn, ISSUER_RANGES_LOCK_KEY).await?;
                let others = issuer_key::Entity::find()
                    .filter(issuer_key::Column::OwnerOrganizationId.ne(owner))
                    .all(txn)
                    .await?;
                let overlaps = others
                    .iter()
                    .any(|key| key.prefix.starts_with(&prefix) || prefix.starts_with(&key.prefix));
                if overlaps {
                    return Err(overlap_conflict());
                }
                issuer_key::Entity::insert(model)
                    .exec_with_returning(txn)
                    .await
                    .map_err(|err| {
                        if violates_constraint(&err, migration::PREFIX_RANGES_DISJOINT) {
                            return overlap_conflict();
                        }
                        ApiError::from(err)
                    })
            })
        })
        .await
    }

    /// ACTIVE -> RETIRED (no new numbers), or ACTIVE/RETIRED -> REVOKED (every number dies at once).
    pub async fn step_issuer_key(
        &self,
        principal: &Principal,
        id: Uuid,
        step: KeyStep,
    ) -> ApiResult<issuer_key::Model> {
        authorize(principal, Action::ManageKeys)?;
        let (from, to, action): (&[IssuerKeyStatus], _, _) = match step {
            KeyStep::Retire => (
                &[IssuerKeyStatus::Active],
                IssuerKeyStatus::Retired,
                "retire the key",
            ),
            KeyStep::Revoke => (
                &[IssuerKeyStatus::Active, IssuerKeyStatus::Retired],
                IssuerKeyStatus::Revoked,
                "revoke the key",
            ),
        };
        let owner = principal.organization_id;
        // The step and the flagging of the key's payments commit together. The key's row is locked
        // by the update, and every approval reads the key under a share lock: a tap judged under
        // the key before the revocation commits is flagged with the others, one judged after sees
        // the key REVOKED.
        // A refused step returns its error from inside, so nothing commits (no audit entry either).
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let changed = issuer_key::Entity::update_many()
                    .col_expr(issuer_key::Column::Status, Expr::value(to))
                    .col_expr(
                        issuer_key::Column::Version,
                        Expr::col(issuer_key::Column::Version).add(1),
                    )
                    .col_expr(issuer_key::Column::UpdatedAt, Expr::value(Utc::now()))
                    .filter(issuer_key::Column::Id.eq(id))
                    .filter(issuer_key::Column::OwnerOrganizationId.eq(owner))
                    .filter(issuer_key::Column::Status.is_in(from.iter().copied()))
                    .exec(txn)
                    .await?;
                if changed.rows_affected != 1 {
                    let key = issuer_key::Entity::find_by_id(id)
                        .filter(issuer_key::Column::OwnerOrganizationId.eq(owner))
                        .one(txn)
                        .await?
                        .ok_or(ApiError::not_found("issuer key"))?;
                    return Err(ApiError::InvalidTransition {
                        action,
                        reason: format!("the key is {:?}", key.status).to_uppercase(),
                    });
                }
                let key = issuer_key::Entity::find_by_id(id)
                    .one(txn)
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!(
                            "issuer key {id} vanished while stepped"
                        ))
                    })?;
                if to == IssuerKeyStatus::Revoked {
                    flag_payments_under(txn, &key).await?;
                }
                Ok(key)
            })
        })
        .await
    }

    pub async fn issuer_key(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> ApiResult<issuer_key::Model> {
        authorize(principal, Action::ReadOwnOrganization)?;
        issuer_key::Entity::find_by_id(id)
            .filter(issuer_key::Column::OwnerOrganizationId.eq(principal.organization_id))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("issuer key"))
    }

    /// The caller's own issuer keys.
    pub async fn issuer_keys(&self, principal: &Principal) -> ApiResult<Vec<issuer_key::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        Ok(issuer_key::Entity::find()
            .filter(issuer_key::Column::OwnerOrganizationId.eq(principal.organization_id))
            .order_by_asc(issuer_key::Column::KeyId)
            .all(&self.db)
            .await?)
    }

    /// Registers a card the caller issued (MEMBER or ADMIN of a financial provider).
    pub async fn register_card(
        &self,
        principal: &Principal,
        input: NewCard,
    ) -> ApiResult<card::Model> {
        authorize(principal, Action::IssueCards)?;
        let public_key = strict_key("publicKey", &input.public_key_base64)?;
        let last_four = input.last_four.trim();
        if last_four.len() != 4 || !last_four.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::validation("lastFour", "must be four digits"));
        }
        let now = Utc::now();
        let model = card::ActiveModel {
            id: Set(input.card_id),
            issuer_organization_id: Set(principal.organization_id),
            public_key: Set(public_key),
            status: Set(CardStatus::Active),
            last_four: Set(last_four.to_owned()),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
        };
        write_transaction(&self.db, move |txn| {
            Box::pin(async move { Ok(card::Entity::insert(model).exec_with_returning(txn).await?) })
        })
        .await
    }

    /// Blocks or unblocks one of the caller's cards; a blocked card's numbers are declined.
    pub async fn set_card_status(
        &self,
        principal: &Principal,
        id: Uuid,
        status: CardStatus,
    ) -> ApiResult<card::Model> {
        authorize(principal, Action::IssueCards)?;
        let current = self.card(principal, id).await?;
        if current.status == status {
            return Err(ApiError::InvalidTransition {
                action: if status == CardStatus::Blocked {
                    "block the card"
                } else {
                    "unblock the card"
                },
                reason: format!(
                    "the card is already {}",
                    if status == CardStatus::Blocked {
                        "BLOCKED"
                    } else {
                        "ACTIVE"
                    }
                ),
            });
        }
        let issuer = principal.organization_id;
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let changed = card::Entity::update_many()
                    .col_expr(card::Column::Status, Expr::value(status))
                    .col_expr(
                        card::Column::Version,
                        Expr::col(card::Column::Version).add(1),
                    )
                    .col_expr(card::Column::UpdatedAt, Expr::value(Utc::now()))
                    .filter(card::Column::Id.eq(id))
                    .filter(card::Column::IssuerOrganizationId.eq(issuer))
                    .filter(card::Column::Status.ne(status))
                    .exec(txn)
                    .await?;
                // Blocked or unblocked meanwhile: refused, rolled back (no audit entry).
                if changed.rows_affected != 1 {
                    return Err(ApiError::Conflict(
                        "the card changed meanwhile; read it again".into(),
                    ));
                }
                Ok(())
            })
        })
        .await?;
        self.card(principal, id).await
    }

    pub async fn card(&self, principal: &Principal, id: Uuid) -> ApiResult<card::Model> {
        authorize(principal, Action::ReadOwnOrganization)?;
        card::Entity::find_by_id(id)
            .filter(card::Column::IssuerOrganizationId.eq(principal.organization_id))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("card"))
    }

    /// The caller's cards, oldest first.
    pub async fn cards(
        &self,
        principal: &Principal,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<card::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let select = card::Entity::find()
            .filter(card::Column::IssuerOrganizationId.eq(principal.organization_id));
        let ordering = Ordering {
            name: "createdAt",
            column: card::Column::CreatedAt,
            descending: false,
            key: |c: &card::Model| SortKey::Time(c.created_at),
        };
        paginate(
            &self.db,
            select,
            card::Column::Id,
            |c| c.id,
            ordering,
            args,
            with_total,
        )
        .await
    }
}

fn overlap_conflict() -> ApiError {
    ApiError::Conflict("the prefix overlaps another issuer's number range".into())
}

/// Flags every payment authorized under `key` for review (a revoked key's payments are not voided).
async fn flag_payments_under(
    txn: &sea_orm::DatabaseTransaction,
    key: &issuer_key::Model,
) -> ApiResult<()> {
    let mut authorized_under_key = sea_orm::sea_query::Query::select();
    authorized_under_key
        .column(payment_evidence::Column::PaymentId)
        .from(payment_evidence::Entity)
        .and_where(
            Expr::col(payment_evidence::Column::IssuerOrganizationId).eq(key.owner_organization_id),
        )
        .and_where(Expr::col(payment_evidence::Column::IssuerKeyId).eq(key.key_id))
        .and_where(
            Expr::col(payment_evidence::Column::Outcome).eq(sea_orm::ActiveEnum::to_value(
                &payment_evidence::Outcome::Authorized,
            )),
        );
    let flagged = payment::Entity::update_many()
        .col_expr(
            payment::Column::Flag,
            flags::appended_to_column(PaymentFlag::IssuerKeyRevoked, payment::Column::Flag),
        )
        .filter(payment::Column::Id.in_subquery(authorized_under_key.to_owned()))
        .exec(txn)
        .await?;
    tracing::warn!(
        issuer_key = %key.id,
        flagged_payments = flagged.rows_affected,
        "issuer key revoked: every number under it is refused from now on"
    );
    Ok(())
}
