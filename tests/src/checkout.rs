//! The payments fixture: a retailer with a shop, a terminal and a placed order, a bank with an issuer key
//! and a card personalized by the issuer tooling, and the card itself, driven as a reader would.

use api::auth::Role;
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use card_protocol::{
    CardId,
    apdu::{self, Command, sw},
    card::{CardApplication, CardFile},
    card_signature::{PaymentRequestFields, sign_payment},
    issuer::{Issuance, IssuerFile},
    number::PrefixRange,
    token::{Channel, DomainRestrictions, TOKEN_LEN, Token, TokenBody},
};
use ed25519_dalek::SigningKey;
use entities::organization::OrganizationKind;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Backend, RecordKind, TestApp, decode_global_id, encode_global_id};

pub const PAY: &str =
    "mutation($input: PayWithOneTimeNumberInput!) { payWithOneTimeNumber(input: $input) {
    status declineReason evidenceId payment { id amountMinor status flags issuer { name } } } }";
pub const REQUEST: &str = "mutation($input: RequestPaymentInput!) { requestPayment(input: $input) { paymentRequest {
    id status amountMinor challenge signingFields { requestId merchantId terminalId hubInstanceId } } } }";

pub const ISSUER_SEED: [u8; 32] = [0x61; 32];
pub const CARD_SEED: [u8; 32] = [0x62; 32];
pub const CARD_ID: CardId = CardId::from_bytes([0x77; 16]);

pub struct Checkout {
    pub app: TestApp,
    pub bank: Uuid,
    pub member: String,
    pub bank_admin: String,
    pub device_key: SigningKey,
    pub device: Uuid,
    pub order: String,
    pub card: CardApplication,
    pub card_gid: String,
    pub key_gid: String,
    pub clock_ms: u64,
}

impl Checkout {
    pub async fn new(backend: Backend) -> Self {
        Self::new_with(backend, 3, |_| {}).await
    }

    /// A checkout whose order holds `quantity` coffees at 10.00, on a hub configured by `configure`.
    pub async fn new_with(
        backend: Backend,
        quantity: i64,
        configure: impl FnOnce(&mut api::config::HubConfig),
    ) -> Self {
        let app = TestApp::start_with(backend, configure).await;
        let admin = app.token(app.retailer_id, Role::Admin).await;
        let member = app.token(app.retailer_id, Role::Member).await;
        let bank = app
            .create_organization("Card Bank", OrganizationKind::FinancialProvider)
            .await;
        let bank_admin = app.token(bank, Role::Admin).await;

        // The bank's key and a card, made by the issuer tooling.
        let key_not_after = chrono::Utc::now().timestamp() as u64 + 365 * 86_400;
        let mut issuer = IssuerFile::new(
            bank.into(),
            1,
            [0x61; 32],
            PrefixRange::new("400012").expect("prefix"),
            key_not_after,
        );
        let card_file: CardFile = issuer
            .personalize(
                CARD_ID,
                [0x62; 32],
                &Issuance {
                    count: 64,
                    restrictions: DomainRestrictions {
                        max_amount_minor: 5_000,
                        currency: *b"EUR",
                        merchant: None,
                        channel: Channel::ContactlessPresent,
                    },
                    not_after: key_not_after - 86_400,
                },
            )
            .expect("personalize");
        let card = CardApplication::from_file(&card_file).expect("card");
        let key = app
            .graphql(Some(&bank_admin), "mutation($input: RegisterIssuerKeyInput!) { registerIssuerKey(input: $input) { issuerKey { id } } }",
                json!({ "input": { "keyId": 1, "publicKey": STANDARD.encode(issuer.signing_key().expect("key").verifying_key().as_bytes()),
                    "prefix": "400012", "notAfter": chrono::DateTime::from_timestamp(key_not_after as i64, 0).expect("time").to_rfc3339() } }))
            .await;
        let key_gid = key
            .data("/registerIssuerKey/issuerKey/id")
            .as_str()
            .expect("id")
            .to_owned();
        let registered = app
            .graphql(Some(&bank_admin), "mutation($input: RegisterCardInput!) { registerCard(input: $input) { card { id } } }",
                json!({ "input": { "cardId": card_file.card_id, "publicKey": STANDARD.encode(card.info().card_public_key), "lastFour": "1234" } }))
            .await;
        let card_gid = registered
            .data("/registerCard/card/id")
            .as_str()
            .expect("id")
            .to_owned();

        // A shop with a terminal, a product and a placed order of 3000.
        let device_key = SigningKey::from_bytes(&[0x63; 32]);
        let location = app
            .graphql(Some(&admin), "mutation { createLocation(input: { name: \"Shop\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
            .await
            .data("/createLocation/location/id")
            .clone();
        let device = app
            .graphql(Some(&admin), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
                json!({ "input": { "name": "Till", "locationId": location, "publicKey": STANDARD.encode(device_key.verifying_key().as_bytes()) } }))
            .await
            .data("/registerDevice/device/id")
            .as_str()
            .expect("id")
            .to_owned();
        let product = app
            .graphql(Some(&member), "mutation { createProduct(input: { sku: \"COFFEE\", name: \"Coffee\", priceMinor: 1000, currency: \"EUR\" }) { product { id } } }", json!({}))
            .await
            .data("/createProduct/product/id")
            .clone();
        let order = app
            .graphql(Some(&member), "mutation($p: ID!, $q: Int!) { createOrder(input: { lines: [{ productId: $p, quantity: $q }] }) { order { id } } }", json!({ "p": product, "q": quantity }))
            .await
            .data("/createOrder/order/id")
            .as_str()
            .expect("id")
            .to_owned();
        app.graphql(
            Some(&member),
            "mutation($id: ID!) { placeOrder(input: { id: $id }) { order { id } } }",
            json!({ "id": order }),
        )
        .await
        .data("/placeOrder");
        Self {
            bank,
            app,
            member,
            bank_admin,
            device_key,
            device: decode_global_id(&device),
            order,
            card,
            card_gid,
            key_gid,
            clock_ms: 0,
        }
    }

    pub fn device_token(&self) -> String {
        device_token(self.device, &self.device_key)
    }

    pub async fn request(&self, amount: i64) -> Value {
        let response = self
            .app
            .graphql(Some(&self.member), REQUEST, json!({ "input": {
                "orderId": self.order, "terminalId": encode_global_id(RecordKind::Device, self.device), "amountMinor": amount, "currency": "EUR" } }))
            .await;
        response.data("/requestPayment/paymentRequest").clone()
    }

    /// The card answers GENERATE PAYMENT for a request, as a reader would drive it.
    pub fn tap(&mut self, request: &Value) -> (String, String) {
        let request_fields = signed_fields(request);
        self.clock_ms += 1_000;
        let select = self
            .card
            .process(&Command::select().encode(), self.clock_ms);
        assert_eq!(select.response.sw, sw::OK);
        let command = Command::new(
            apdu::CLA_PROPRIETARY,
            apdu::INS_GENERATE_PAYMENT,
            0,
            0,
            &request_fields.encode(),
            Some(256),
        );
        let first = self.card.process(&command.encode(), self.clock_ms);
        assert_eq!(
            first.response.sw & 0xFF00,
            sw::MORE_DATA,
            "GENERATE PAYMENT answered {:04X}",
            first.response.sw
        );
        let get_response = Command::new(0, apdu::INS_GET_RESPONSE, 0, 0, &[], Some(256));
        let rest = self.card.process(&get_response.encode(), self.clock_ms);
        let mut answer = first.response.data;
        answer.extend_from_slice(&rest.response.data);
        (
            URL_SAFE_NO_PAD.encode(&answer[..TOKEN_LEN]),
            URL_SAFE_NO_PAD.encode(&answer[TOKEN_LEN..]),
        )
    }

    /// A token and card signature made by hand: the bank's key and the card's key, `edit` applied.
    pub fn forge(
        &self,
        request: &Value,
        n: u64,
        edit: impl FnOnce(&mut TokenBody, &mut [SigningKey; 2]),
    ) -> (String, String) {
        let mut keys = [
            SigningKey::from_bytes(&ISSUER_SEED),
            SigningKey::from_bytes(&CARD_SEED),
        ];
        let mut body = TokenBody {
            issuer: self.bank.into(),
            key_id: 1,
            number: PrefixRange::new("400012")
                .expect("prefix")
                .number(900_000 + n)
                .expect("number"),
            card_id: CARD_ID,
            sequence: 10_000 + n as u32,
            not_after: chrono::Utc::now().timestamp() as u64 + 86_400,
            restrictions: DomainRestrictions {
                max_amount_minor: 5_000,
                currency: *b"EUR",
                merchant: None,
                channel: Channel::ContactlessPresent,
            },
            card_public_key: keys[1].verifying_key().to_bytes(),
        };
        edit(&mut body, &mut keys);
        let token = Token::sign(body, &keys[0]);
        let signature = sign_payment(&keys[1], &token, &signed_fields(request));
        (token.to_base64url(), URL_SAFE_NO_PAD.encode(signature))
    }

    pub async fn pay(&self, request: &Value, token: &str, signature: &str, key: &str) -> Value {
        let device = self.device_token();
        self.app
            .graphql(Some(&device), PAY, json!({ "input": { "requestId": request["id"], "token": token, "cardSignature": signature, "idempotencyKey": key } }))
            .await
            .data("/payWithOneTimeNumber")
            .clone()
    }
}

/// Payment limits no test of another rule runs into: a card may pay a thousand times, ten million
/// minor units, at a thousand terminals; a device ten million. A test then tightens the one it is
/// about.
pub fn generous_limits(limits: &mut api::config::PaymentLimits) {
    limits.card_velocity_count = 1_000;
    limits.card_velocity_sum_minor = 10_000_000;
    limits.card_velocity_terminals = 1_000;
    limits.device_cap_minor = 10_000_000;
}

/// A device's self-signed token, as the reader agent makes it.
pub fn device_token(device: Uuid, key: &SigningKey) -> String {
    device_token::sign(device, key, "iot-commerce-hub", 120).expect("device token")
}

/// The request fields a card signs, from a payment request as the hub shows it.
pub fn signed_fields(request: &Value) -> PaymentRequestFields {
    let fields = &request["signingFields"];
    let uuid = |name: &str| Uuid::parse_str(fields[name].as_str().expect(name)).expect("uuid");
    let challenge = URL_SAFE_NO_PAD
        .decode(request["challenge"].as_str().expect("challenge"))
        .expect("b64");
    PaymentRequestFields {
        request_id: uuid("requestId").into(),
        challenge: challenge.try_into().expect("16 bytes"),
        amount_minor: request["amountMinor"]
            .as_str()
            .expect("amount")
            .parse()
            .expect("int"),
        currency: *b"EUR",
        merchant: uuid("merchantId").into(),
        terminal: uuid("terminalId").into(),
        hub_instance: uuid("hubInstanceId").into(),
    }
}

impl Checkout {
    /// Another placed order of `quantity` coffees (one open payment request per order).
    pub async fn new_order(&self, quantity: i64) -> String {
        let product = self
            .app
            .graphql(
                Some(&self.member),
                "{ products(filter: { sku: \"COFFEE\" }) { edges { node { id } } } }",
                json!({}),
            )
            .await
            .data("/products/edges/0/node/id")
            .clone();
        let order = self
            .app
            .graphql(Some(&self.member), "mutation($p: ID!, $q: Int!) { createOrder(input: { lines: [{ productId: $p, quantity: $q }] }) { order { id } } }", json!({ "p": product, "q": quantity }))
            .await
            .data("/createOrder/order/id")
            .as_str()
            .expect("id")
            .to_owned();
        self.app
            .graphql(
                Some(&self.member),
                "mutation($id: ID!) { placeOrder(input: { id: $id }) { order { id } } }",
                json!({ "id": order }),
            )
            .await
            .data("/placeOrder");
        order
    }

    pub async fn request_for(&self, order: &str, amount: i64) -> Value {
        self.app
            .graphql(Some(&self.member), REQUEST, json!({ "input": {
                "orderId": order, "terminalId": encode_global_id(RecordKind::Device, self.device), "amountMinor": amount, "currency": "EUR" } }))
            .await
            .data("/requestPayment/paymentRequest")
            .clone()
    }
}

impl Checkout {
    /// Another terminal at the shop, with its own key (seeded by `seed`).
    pub async fn add_terminal(&self, seed: u8) -> (String, SigningKey) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let device = self
            .add_terminal_with_key(
                &format!("Till {seed}"),
                &STANDARD.encode(key.verifying_key().as_bytes()),
            )
            .await;
        (device, key)
    }

    /// Registers a terminal at the shop with a public key made elsewhere (`reader-agent init`); returns
    /// its global ID.
    pub async fn add_terminal_with_key(&self, name: &str, public_key: &str) -> String {
        let admin = self.app.token(self.app.retailer_id, Role::Admin).await;
        let location = self
            .app
            .graphql(
                Some(&admin),
                "{ locations(first: 1) { edges { node { id } } } }",
                json!({}),
            )
            .await
            .data("/locations/edges/0/node/id")
            .clone();
        self.app
            .graphql(Some(&admin), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
                json!({ "input": { "name": name, "locationId": location, "publicKey": public_key } }))
            .await
            .data("/registerDevice/device/id")
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// Revokes a terminal (its device) as the retailer's ADMIN, at the version it has now.
    pub async fn revoke_device(&self, device: &str) {
        let admin = self.app.token(self.app.retailer_id, Role::Admin).await;
        let version = self
            .app
            .graphql(
                Some(&admin),
                "query($id: ID!) { node(id: $id) { ... on Device { version } } }",
                json!({ "id": device }),
            )
            .await
            .data("/node/version")
            .clone();
        let revoked = self
            .app
            .graphql(
                Some(&admin),
                "mutation($id: ID!, $v: Int!) { revokeDevice(input: { id: $id, version: $v }) { device { status } } }",
                json!({ "id": device, "v": version }),
            )
            .await;
        assert_eq!(revoked.data("/revokeDevice/device/status"), "REVOKED");
    }

    /// Another card of the bank (its id and key seeded by `seed`), registered by the bank.
    pub async fn add_card(&self, seed: u8) -> (CardId, SigningKey) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let card_id = CardId::from_bytes([seed; 16]);
        self.app
            .graphql(Some(&self.bank_admin), "mutation($input: RegisterCardInput!) { registerCard(input: $input) { card { id } } }",
                json!({ "input": { "cardId": Uuid::from(card_id), "publicKey": STANDARD.encode(key.verifying_key().as_bytes()), "lastFour": "4321" } }))
            .await
            .data("/registerCard/card/id");
        (card_id, key)
    }

    pub async fn request_at(&self, order: &str, terminal: &str, amount: i64) -> Value {
        self.app
            .graphql(Some(&self.member), REQUEST, json!({ "input": {
                "orderId": order, "terminalId": terminal, "amountMinor": amount, "currency": "EUR" } }))
            .await
            .data("/requestPayment/paymentRequest")
            .clone()
    }
}

/// `card` re-signs a used token for another request, as a thief holding the card key could.
pub fn replay_for(token: &str, request: &Value) -> (String, String) {
    let parsed = Token::from_base64url(token).expect("token");
    let signature = sign_payment(
        &SigningKey::from_bytes(&CARD_SEED),
        &parsed,
        &signed_fields(request),
    );
    (token.to_owned(), URL_SAFE_NO_PAD.encode(signature))
}
