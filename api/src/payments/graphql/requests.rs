//! Payment requests at terminals, over [`PaymentRequestService`].

use std::collections::HashMap;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, Subscription};
use base64::Engine;
use chrono::{DateTime, Utc};
use entities::payment_request;
use futures_util::{Stream, StreamExt, future::ready, stream};
use uuid::Uuid;

use super::DeclineReason;
use crate::financial::{FinancialService, graphql::Payment};
use crate::graphql::relay::IntoConnection;
use crate::payments::requests::{NewPaymentRequest, PaymentRequestService};
use crate::{
    events::EventFeed,
    graphql::live::{self, Following},
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
        scalars::Int64,
    },
    policy::may_see_challenge,
    records::RecordKind,
};

fn requests<'a>(ctx: &Context<'a>) -> &'a PaymentRequestService {
    ctx.data_unchecked::<PaymentRequestService>()
}

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

/// A request for a card payment at one terminal.
pub struct PaymentRequest(pub payment_request::Model);

#[Object]
impl PaymentRequest {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::PaymentRequest, self.0.id)
    }
    async fn order_id(&self) -> ID {
        encode_id(RecordKind::Order, self.0.order_id)
    }
    async fn terminal_id(&self) -> ID {
        encode_id(RecordKind::Device, self.0.device_id)
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
    /// Taps at this terminal declined while the request was open.
    async fn decline_count(&self) -> i32 {
        self.0.decline_count
    }
    /// Why the latest of those taps was declined (null before any): what the checkout screen tells
    /// the staff while the request stays open for another card.
    async fn last_decline_reason(&self) -> Option<DeclineReason> {
        self.0.last_decline_reason.map(Into::into)
    }
    /// The payment that paid the request, once PAID.
    async fn payment(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Payment>> {
        let Some(id) = self.0.payment_id else {
            return Ok(None);
        };
        // A caller who sees the request but not the payment gets null, as for a request not yet paid.
        match ctx
            .data_unchecked::<FinancialService>()
            .payment(ctx.principal()?, id)
            .await
        {
            Ok(payment) => Ok(Some(Payment(payment))),
            Err(crate::error::ApiError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
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
            hub_instance_id: requests(ctx).hub_instance().to_string(),
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

#[derive(InputObject, Default)]
pub struct PaymentRequestFilter {
    status: Option<PaymentRequestStatus>,
}

#[derive(Default)]
pub struct PaymentRequestQuery;

#[Object]
impl PaymentRequestQuery {
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
        let page = requests(ctx)
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

#[derive(Default)]
pub struct PaymentRequestMutation;

#[Object]
impl PaymentRequestMutation {
    /// Opens a payment request for an order at a terminal (checkout staff, or the terminal's device).
    async fn request_payment(
        &self,
        ctx: &Context<'_>,
        input: RequestPaymentInput,
    ) -> async_graphql::Result<PaymentRequestPayload> {
        let new = NewPaymentRequest {
            order_id: decode_id("orderId", RecordKind::Order, &input.order_id)?,
            terminal_id: decode_id("terminalId", RecordKind::Device, &input.terminal_id)?,
            amount_minor: input.amount_minor.0,
            currency: input.currency,
        };
        let request = requests(ctx).request_payment(ctx.principal()?, new).await?;
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
        let id = decode_id("id", RecordKind::PaymentRequest, &input.id)?;
        let request = requests(ctx)
            .cancel_payment_request(ctx.principal()?, id)
            .await?;
        Ok(PaymentRequestPayload {
            payment_request: PaymentRequest(request),
        })
    }
}

fn is_final(request: &payment_request::Model) -> bool {
    request.status != payment_request::PaymentRequestStatus::Open
}

#[derive(Default)]
pub struct PaymentRequestSubscription;

#[Subscription]
impl PaymentRequestSubscription {
    /// A payment request as it is now, then each time it changes, until it is PAID or CANCELLED
    /// (what a checkout screen shows).
    async fn payment_request(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<PaymentRequest>> + use<>>
    {
        let id = decode_id("id", RecordKind::PaymentRequest, &id)?;
        let service = requests(ctx).clone();
        let Following {
            slot,
            principal,
            events,
        } = live::follow(ctx, None)?;
        let current = service.payment_request(&principal, id).await?;
        let read = move || {
            let (service, principal) = (service.clone(), principal.clone());
            async move { service.payment_request(&principal, id).await }
        };
        let versions = EventFeed::follow_record(
            events,
            RecordKind::PaymentRequest,
            id,
            current,
            read,
            is_final,
        );
        Ok(live::deliver(slot, versions, PaymentRequest))
    }

    /// The payment requests of a terminal: first every open one, then each one that is opened, paid
    /// or cancelled there. For the terminal's own device (its reader) and its organization's members.
    async fn terminal_payment_requests(
        &self,
        ctx: &Context<'_>,
        terminal_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<PaymentRequest>> + use<>>
    {
        let terminal = decode_id("terminalId", RecordKind::Device, &terminal_id)?;
        let service = requests(ctx).clone();
        let Following {
            slot,
            principal,
            events,
        } = live::follow(ctx, None)?;
        let open = service.open_requests_at(&principal, terminal).await?;
        let changes = events.filter_map(move |item| {
            let (service, principal) = (service.clone(), principal.clone());
            async move {
                let event = match item {
                    Ok(event) => event,
                    Err(err) => return Some(Err(err)),
                };
                if event.record_type != RecordKind::PaymentRequest.name() {
                    return None;
                }
                match service.payment_request(&principal, event.record_id).await {
                    Ok(request) if request.device_id == terminal => {
                        EventFeed::record_delivery(&event);
                        Some(Ok(request))
                    }
                    Ok(_) => None,
                    // Gone from view (or never in it): not this subscriber's concern.
                    Err(crate::error::ApiError::NotFound { .. }) => None,
                    Err(err) => Some(Err(err)),
                }
            }
        });
        // A request opened while the subscription started is both in the open list and in the feed:
        // each version of a request is delivered once. Final versions do not change again, so they
        // leave the map, which holds only the terminal's open requests.
        let mut delivered: HashMap<Uuid, payment_request::Model> = HashMap::new();
        let requests = stream::iter(open.into_iter().map(Ok))
            .chain(changes)
            .filter(move |item| {
                let new = match item {
                    Ok(request) if is_final(request) => delivered
                        .remove(&request.id)
                        .is_none_or(|seen| seen != *request),
                    Ok(request) => delivered
                        .insert(request.id, request.clone())
                        .is_none_or(|seen| seen != *request),
                    Err(_) => true,
                };
                ready(new)
            });
        Ok(live::deliver(slot, requests, PaymentRequest))
    }
}
