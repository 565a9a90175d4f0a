//! Payment requests: a checkout asks for a card payment of an order at one of its terminals, with a
//! fresh challenge and deadlines judged by the database clock (`docs/payments.md`).

use card_protocol::{HubInstanceId, card_signature::PaymentRequestFields};
use chrono::{Duration, Utc};
use entities::{
    device::{self, DeviceStatus},
    order::{self, OrderStatus},
    payment_request::{self, PaymentRequestStatus},
};
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    auth::Principal,
    config::PaymentLimits,
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    db::{write_staged, write_transaction, writes::Writes},
    error::{ApiError, ApiResult},
    events::{FINANCIAL, NewEvent, Outbox, record, stage_event},
    policy::{Action, authorize, may_follow_terminal, payment_request_visible},
    records::RecordKind,
};

/// What a checkout asks for.
#[derive(Debug, Clone)]
pub struct NewPaymentRequest {
    pub order_id: Uuid,
    pub terminal_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
}

/// Opens, cancels and lists payment requests.
#[derive(Clone)]
pub struct PaymentRequestService {
    db: DatabaseConnection,
    outbox: Outbox,
    limits: PaymentLimits,
    hub_instance: HubInstanceId,
}

impl PaymentRequestService {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        limits: PaymentLimits,
        hub_instance: HubInstanceId,
    ) -> Self {
        Self {
            db,
            outbox,
            limits,
            hub_instance,
        }
    }

    pub fn hub_instance(&self) -> Uuid {
        self.hub_instance.into()
    }

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
        let opened = write_staged(&self.db, move |_txn, now| {
            Box::pin(async move {
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
                    decline_count: 0,
                    last_decline_reason: None,
                };
                let mut writes = Writes::new();
                writes.insert(
                    payment_request::Entity::insert(
                        request.clone().into_active_model().reset_all(),
                    )
                    .into_query(),
                );
                stage_event(
                    &mut writes,
                    request_event(
                        id,
                        owner,
                        "payment_request.opened",
                        PaymentRequestStatus::Open,
                    ),
                );
                Ok((request, writes))
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

    pub async fn payment_request(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> ApiResult<payment_request::Model> {
        authorize(principal, Action::RequestPayment)
            .or_else(|_| authorize(principal, Action::ReadOwnOrganization))?;
        payment_request::Entity::find_by_id(id)
            .filter(payment_request_visible(principal))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("payment request"))
    }

    /// The open requests at `terminal`, oldest first (at most 100): what its reader waits on.
    pub async fn open_requests_at(
        &self,
        principal: &Principal,
        terminal: Uuid,
    ) -> ApiResult<Vec<payment_request::Model>> {
        authorize(principal, Action::RequestPayment)
            .or_else(|_| authorize(principal, Action::ReadOwnOrganization))?;
        let device = device::Entity::find_by_id(terminal).one(&self.db).await?;
        if !device.is_some_and(|device| {
            may_follow_terminal(principal, terminal, device.owner_organization_id)
        }) {
            return Err(ApiError::not_found("terminal"));
        }
        Ok(payment_request::Entity::find()
            .filter(payment_request_visible(principal))
            .filter(payment_request::Column::DeviceId.eq(terminal))
            .filter(payment_request::Column::Status.eq(PaymentRequestStatus::Open))
            .order_by_asc(payment_request::Column::CreatedAt)
            .limit(100)
            .all(&self.db)
            .await?)
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
        let mut select = payment_request::Entity::find().filter(payment_request_visible(principal));
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
}

/// What the card signs for a request, rebuilt from the stored request (never from what a device sent).
pub(crate) fn signed_fields(
    request: &payment_request::Model,
    hub_instance: HubInstanceId,
) -> PaymentRequestFields {
    PaymentRequestFields {
        request_id: request.id.into(),
        challenge: request.challenge.as_slice().try_into().unwrap_or([0; 16]),
        amount_minor: u64::try_from(request.amount_minor).unwrap_or(0),
        currency: request.currency.as_bytes().try_into().unwrap_or([0; 3]),
        merchant: request.owner_organization_id.into(),
        terminal: request.device_id.into(),
        hub_instance,
    }
}

pub(crate) fn request_event(
    id: Uuid,
    owner: Uuid,
    event_type: &'static str,
    status: PaymentRequestStatus,
) -> NewEvent {
    NewEvent {
        event_type,
        family: FINANCIAL,
        record_type: RecordKind::PaymentRequest,
        record_id: id,
        status: status.to_value(),
        owner,
        parties: Vec::new(),
    }
}
