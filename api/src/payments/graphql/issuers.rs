//! Issuer keys and cards: a financial provider's own records, over [`PaymentKeysService`].

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use entities::{card, issuer_key};
use uuid::Uuid;

use crate::graphql::relay::IntoConnection;
use crate::payments::{
    PaymentKeysService,
    issuers::{KeyStep, NewCard, NewIssuerKey},
};
use crate::{
    error::ApiError,
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
    },
    records::RecordKind,
};

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
        encode_id(RecordKind::IssuerKey, self.0.id)
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
        encode_id(RecordKind::Card, self.0.id)
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
        let id = decode_id("id", RecordKind::IssuerKey, &input.id)?;
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
        let id = decode_id("id", RecordKind::IssuerKey, &input.id)?;
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
        let id = decode_id("id", RecordKind::Card, &input.id)?;
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
        let id = decode_id("id", RecordKind::Card, &input.id)?;
        let card = service(ctx)
            .set_card_status(ctx.principal()?, id, entities::card::CardStatus::Active)
            .await?;
        Ok(CardPayload { card: Card(card) })
    }
}
