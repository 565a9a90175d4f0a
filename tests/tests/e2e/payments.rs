//! The secure payment mode end to end: a card personalized by the issuer tooling answers through the
//! card-protocol state machine; the terminal's device submits; the hub authorizes at most once.

use api::auth::Role;
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use card_protocol::{
    apdu::{self, Command, sw},
    card::{CardApplication, CardFile},
    card_signature::{PaymentRequestFields, sign_payment},
    issuer::{Issuance, IssuerFile},
    number::PrefixRange,
    token::{Channel, DomainRestrictions, TOKEN_LEN, Token, TokenBody},
};
use ed25519_dalek::SigningKey;
use entities::organization::OrganizationKind;
use hub_tests::{
    Backend, TestApp, decode_global_id, encode_global_id, on_both_backends, on_postgres,
};
use sea_orm::{EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

const PAY: &str =
    "mutation($input: PayWithOneTimeNumberInput!) { payWithOneTimeNumber(input: $input) {
    status declineReason evidenceId payment { id amountMinor status flags issuer { name } } } }";
const REQUEST: &str = "mutation($input: RequestPaymentInput!) { requestPayment(input: $input) { paymentRequest {
    id status amountMinor challenge signingFields { requestId merchantId terminalId hubInstanceId } } } }";

struct Checkout {
    app: TestApp,
    bank: Uuid,
    member: String,
    bank_admin: String,
    device_key: SigningKey,
    device: Uuid,
    order: String,
    card: CardApplication,
    card_gid: String,
    key_gid: String,
    clock_ms: u64,
}

impl Checkout {
    async fn new(backend: Backend) -> Self {
        Self::new_with(backend, 3, |_| {}).await
    }

    /// A checkout whose order holds `quantity` coffees at 10.00, on a hub configured by `configure`.
    async fn new_with(
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
            bank.into_bytes(),
            1,
            [0x61; 32],
            PrefixRange::new("400012").expect("prefix"),
            key_not_after,
        );
        let card_file: CardFile = issuer
            .personalize(
                [0x77; 16],
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

    fn device_token(&self) -> String {
        device_token(self.device, &self.device_key)
    }

    async fn request(&self, amount: i64) -> Value {
        let response = self
            .app
            .graphql(Some(&self.member), REQUEST, json!({ "input": {
                "orderId": self.order, "terminalId": encode_global_id("Device", self.device), "amountMinor": amount, "currency": "EUR" } }))
            .await;
        response.data("/requestPayment/paymentRequest").clone()
    }

    /// The card answers GENERATE PAYMENT for a request, as a reader would drive it.
    fn tap(&mut self, request: &Value) -> (String, String) {
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
    fn forge(
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
            issuer: self.bank.into_bytes(),
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

    async fn pay(&self, request: &Value, token: &str, signature: &str, key: &str) -> Value {
        let device = self.device_token();
        self.app
            .graphql(Some(&device), PAY, json!({ "input": { "requestId": request["id"], "token": token, "cardSignature": signature, "idempotencyKey": key } }))
            .await
            .data("/payWithOneTimeNumber")
            .clone()
    }
}

/// A device's self-signed token, as the reader agent makes it.
fn device_token(device: Uuid, key: &SigningKey) -> String {
    device_token::sign(device, key, "iot-commerce-hub", 120).expect("device token")
}

const ISSUER_SEED: [u8; 32] = [0x61; 32];
const CARD_SEED: [u8; 32] = [0x62; 32];
const CARD_ID: [u8; 16] = [0x77; 16];

/// The request fields a card signs, from a payment request as the hub shows it.
fn signed_fields(request: &Value) -> PaymentRequestFields {
    let fields = &request["signingFields"];
    let uuid = |name: &str| {
        *Uuid::parse_str(fields[name].as_str().expect(name))
            .expect("uuid")
            .as_bytes()
    };
    let challenge = URL_SAFE_NO_PAD
        .decode(request["challenge"].as_str().expect("challenge"))
        .expect("b64");
    PaymentRequestFields {
        request_id: uuid("requestId"),
        challenge: challenge.try_into().expect("16 bytes"),
        amount_minor: request["amountMinor"]
            .as_str()
            .expect("amount")
            .parse()
            .expect("int"),
        currency: *b"EUR",
        merchant: uuid("merchantId"),
        terminal: uuid("terminalId"),
        hub_instance: uuid("hubInstanceId"),
    }
}

async fn a_tap_pays_once(backend: Backend) {
    let mut checkout = Checkout::new(backend).await;
    let request = checkout.request(1_200).await;
    let (token, signature) = checkout.tap(&request);
    let paid = checkout.pay(&request, &token, &signature, "tap-1").await;
    assert_eq!(paid["status"], "AUTHORIZED", "{paid}");
    assert_eq!(paid["payment"]["amountMinor"], "1200");
    assert_eq!(
        paid["payment"]["issuer"]["name"], "Card Bank",
        "the card's issuer, a party of the payment"
    );

    // The same bytes under the same key: the original outcome. Under another key: a replay, declined.
    let again = checkout.pay(&request, &token, &signature, "tap-1").await;
    assert_eq!(again["evidenceId"], paid["evidenceId"]);
    assert_eq!(again["status"], "AUTHORIZED");
    let replay = checkout
        .pay(&request, &token, &signature, "tap-1-replay")
        .await;
    assert_eq!(replay["status"], "DECLINED");
    assert_eq!(replay["declineReason"], "REQUEST_ALREADY_PAID");

    let app = &checkout.app;
    let order = app.graphql(Some(&checkout.member), "query($id: ID!) { node(id: $id) { ... on Order { balanceMinor paidMinor payments { status amountMinor } } } }", json!({ "id": checkout.order })).await;
    assert_eq!(order.data("/node/balanceMinor"), "1800");
    assert_eq!(order.data("/node/payments/0/status"), "AUTHORIZED");
    // The number is stored as its keyed hash only; evidence keeps the token with the digits zeroed.
    let digits = card_protocol::token::Token::from_base64url(&token)
        .expect("token")
        .body
        .number;
    let evidence = entities::payment_evidence::Entity::find()
        .all(&app.hub.state.db)
        .await
        .expect("evidence");
    assert_eq!(evidence.len(), 2, "one authorization, one declined replay");
    assert!(evidence.iter().any(|e| e.replay), "the replay is audited");
    for row in &evidence {
        assert!(
            !row.redacted_token.windows(16).any(|w| w == digits.digits()),
            "the full number is not stored"
        );
    }
    // The bank sees its card's payment; nobody else does.
    let bank_view = app
        .graphql(
            Some(&checkout.bank_admin),
            "query($id: ID!) { node(id: $id) { ... on Payment { amountMinor } } }",
            json!({ "id": paid["payment"]["id"] }),
        )
        .await;
    assert_eq!(bank_view.data("/node/amountMinor"), "1200");
    // Declines: the merchant and the card's issuer see them; strangers and devices do not.
    let declines = "{ paymentDeclines { totalCount edges { node { reason replay } } } }";
    for token in [&checkout.member, &checkout.bank_admin] {
        let seen = app.graphql(Some(token), declines, json!({})).await;
        assert_eq!(seen.data("/paymentDeclines/totalCount"), 1);
        assert_eq!(seen.data("/paymentDeclines/edges/0/node/replay"), true);
    }
    let stranger = app
        .create_organization("Stranger Bank", OrganizationKind::FinancialProvider)
        .await;
    let stranger = app.token(stranger, Role::Admin).await;
    assert_eq!(
        app.graphql(Some(&stranger), declines, json!({}))
            .await
            .data("/paymentDeclines/totalCount"),
        0
    );
    assert_eq!(
        app.graphql(
            Some(&stranger),
            "{ paymentRequests { totalCount } }",
            json!({})
        )
        .await
        .data("/paymentRequests/totalCount"),
        0
    );
    app.graphql(Some(&checkout.device_token()), declines, json!({}))
        .await
        .expect_error("FORBIDDEN");
    // A device sees its own terminal's requests only.
    let mine = app
        .graphql(
            Some(&checkout.device_token()),
            "{ paymentRequests { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(mine.data("/paymentRequests/totalCount"), 1);
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let location = app
        .graphql(Some(&admin), "mutation { createLocation(input: { name: \"Other\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
        .await
        .data("/createLocation/location/id")
        .clone();
    let other_key = SigningKey::from_bytes(&[0x66; 32]);
    let other = app
        .graphql(Some(&admin), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
            json!({ "input": { "name": "Other till", "locationId": location, "publicKey": STANDARD.encode(other_key.verifying_key().as_bytes()) } }))
        .await
        .data("/registerDevice/device/id")
        .as_str()
        .expect("id")
        .to_owned();
    let other_device = Checkout {
        device: decode_global_id(&other),
        device_key: other_key,
        ..checkout
    };
    let theirs = other_device
        .app
        .graphql(
            Some(&other_device.device_token()),
            "{ paymentRequests { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        theirs.data("/paymentRequests/totalCount"),
        0,
        "another terminal's requests are invisible"
    );
    other_device.app.stop().await;
}
on_both_backends!(tap_pays_once, a_tap_pays_once);

async fn declines_consume_nothing_flow(backend: Backend) {
    let mut checkout = Checkout::new(backend).await;
    let request = checkout.request(500).await;
    let (token, signature) = checkout.tap(&request);
    // A tampered card signature is declined; the request and the number stay usable.
    let mut bad = URL_SAFE_NO_PAD.decode(&signature).expect("b64");
    bad[0] ^= 1;
    let before = checkout.app.fingerprint().await;
    let declined = checkout
        .pay(&request, &token, &URL_SAFE_NO_PAD.encode(&bad), "bad-sig")
        .await;
    assert_eq!(
        declined["declineReason"], "BAD_CARD_SIGNATURE",
        "{declined}"
    );
    let after = checkout.app.fingerprint().await;
    for (table, (rows, digest)) in &before.tables {
        if table != "payment_evidence" && table != "idempotency_record" {
            assert_eq!(
                after.tables.get(table),
                Some(&(*rows, digest.clone())),
                "{table} changed on a decline"
            );
        }
    }
    assert_eq!(
        after.rows("payment_evidence"),
        before.rows("payment_evidence") + 1
    );
    let paid = checkout.pay(&request, &token, &signature, "good-sig").await;
    assert_eq!(
        paid["status"], "AUTHORIZED",
        "the declined attempt consumed nothing: {paid}"
    );

    // A blocked card, a revoked issuer key, a cancelled request.
    let next = checkout.request(300).await;
    let (token, signature) = checkout.tap(&next);
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            "mutation($id: ID!) { blockCard(input: { id: $id }) { card { status } } }",
            json!({ "id": checkout.card_gid }),
        )
        .await
        .data("/blockCard");
    assert_eq!(
        checkout.pay(&next, &token, &signature, "blocked").await["declineReason"],
        "CARD_BLOCKED"
    );
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            "mutation($id: ID!) { unblockCard(input: { id: $id }) { card { status } } }",
            json!({ "id": checkout.card_gid }),
        )
        .await
        .data("/unblockCard");
    let cancel = checkout
        .app
        .graphql(Some(&checkout.member), "mutation($id: ID!) { cancelPaymentRequest(input: { id: $id }) { paymentRequest { status } } }", json!({ "id": next["id"] }))
        .await;
    assert_eq!(
        cancel.data("/cancelPaymentRequest/paymentRequest/status"),
        "CANCELLED"
    );
    assert_eq!(
        checkout.pay(&next, &token, &signature, "cancelled").await["declineReason"],
        "REQUEST_CANCELLED"
    );
    let third = checkout.request(300).await;
    let (token, signature) = checkout.tap(&third);
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            "mutation($id: ID!) { revokeIssuerKey(input: { id: $id }) { issuerKey { status } } }",
            json!({ "id": checkout.key_gid }),
        )
        .await
        .data("/revokeIssuerKey");
    assert_eq!(
        checkout.pay(&third, &token, &signature, "revoked").await["declineReason"],
        "ISSUER_KEY_REVOKED"
    );
    // The payment authorized earlier under the revoked key is flagged, not voided.
    let flagged = checkout
        .app
        .graphql(
            Some(&checkout.member),
            "query($id: ID!) { node(id: $id) { ... on Order { payments { status flags } } } }",
            json!({ "id": checkout.order }),
        )
        .await;
    assert_eq!(flagged.data("/node/payments/0/status"), "AUTHORIZED");
    assert_eq!(
        flagged.data("/node/payments/0/flags"),
        &json!(["ISSUER_KEY_REVOKED"])
    );

    // Refused requests are errors, not declines: above the balance, a second open request, a stranger.
    let app = &checkout.app;
    let request_input = |amount: i64| json!({ "input": { "orderId": checkout.order, "terminalId": encode_global_id("Device", checkout.device), "amountMinor": amount, "currency": "EUR" } });
    app.graphql(Some(&checkout.member), REQUEST, request_input(10_000))
        .await
        .expect_error("VALIDATION");
    app.graphql(Some(&checkout.member), REQUEST, request_input(100))
        .await
        .expect_error("CONFLICT");
    app.graphql(Some(&checkout.bank_admin), REQUEST, request_input(100))
        .await
        .expect_error("NOT_FOUND");
    // Only the terminal's device submits.
    app.graphql(Some(&checkout.member), PAY, json!({ "input": { "requestId": third["id"], "token": token, "cardSignature": signature, "idempotencyKey": "member" } }))
        .await
        .expect_error("FORBIDDEN");
    checkout.app.stop().await;
}
on_both_backends!(declines_consume_nothing, declines_consume_nothing_flow);

/// A submission declined with `reason`, that left everything but its own evidence as it was.
async fn expect_decline(
    checkout: &Checkout,
    request: &Value,
    submission: (String, String),
    reason: &str,
    key: &str,
) {
    let before = checkout.app.fingerprint().await;
    let outcome = checkout
        .pay(request, &submission.0, &submission.1, key)
        .await;
    assert_eq!(outcome["status"], "DECLINED", "{reason}: {outcome}");
    assert_eq!(outcome["declineReason"], reason, "{outcome}");
    let after = checkout.app.fingerprint().await;
    for (table, state) in &before.tables {
        if table != "payment_evidence" && table != "idempotency_record" {
            assert_eq!(
                after.tables.get(table),
                Some(state),
                "{reason}: {table} changed"
            );
        }
    }
    assert_eq!(
        after.rows("payment_evidence"),
        before.rows("payment_evidence") + 1,
        "{reason}: evidence recorded"
    );
}

async fn authorized(checkout: &Checkout, request: &Value, submission: (String, String), key: &str) {
    let outcome = checkout
        .pay(request, &submission.0, &submission.1, key)
        .await;
    assert_eq!(outcome["status"], "AUTHORIZED", "{key}: {outcome}");
}

async fn every_decline_reason_consumes_nothing(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 60, |config| {
        let limits = &mut config.payment_limits;
        limits.card_velocity_count = 1_000;
        limits.card_velocity_sum_minor = 10_000_000;
        limits.device_cap_minor = 10_000_000;
    })
    .await;
    let other_key = SigningKey::from_bytes(&[0x99; 32]);
    type Edit = Box<dyn FnOnce(&mut TokenBody, &mut [SigningKey; 2])>;
    let cases: Vec<(&str, Edit)> = vec![
        ("UNKNOWN_ISSUER_KEY", Box::new(|body, _| body.key_id = 2)),
        ("BAD_ISSUER_SIGNATURE", {
            let k = other_key.clone();
            Box::new(move |_, keys| keys[0] = k)
        }),
        (
            "NUMBER_OUT_OF_RANGE",
            Box::new(|body, _| {
                body.number = PrefixRange::new("510000").expect("p").number(5).expect("n")
            }),
        ),
        (
            "NUMBER_EXPIRED",
            Box::new(|body, _| body.not_after = chrono::Utc::now().timestamp() as u64 - 60),
        ),
        (
            "DOMAIN_RESTRICTION",
            Box::new(|body, _| body.restrictions.currency = *b"USD"),
        ),
        (
            "DOMAIN_RESTRICTION",
            Box::new(|body, _| body.restrictions.merchant = Some([0x42; 16])),
        ),
        (
            "CARD_UNKNOWN",
            Box::new(|body, _| body.card_id = [0x99; 16]),
        ),
        ("CARD_KEY_MISMATCH", {
            let k = other_key.clone();
            Box::new(move |body, keys| {
                body.card_public_key = k.verifying_key().to_bytes();
                keys[1] = k;
            })
        }),
    ];
    for (n, (reason, edit)) in cases.into_iter().enumerate() {
        let request = checkout.request(100).await;
        let forged = checkout.forge(&request, n as u64, edit);
        expect_decline(&checkout, &request, forged, reason, &format!("decline-{n}")).await;
        // Nothing was consumed: the right card pays the same request.
        let genuine = checkout.tap(&request);
        authorized(&checkout, &request, genuine, &format!("genuine-{n}")).await;
    }

    // A bad card signature, and an unknown request.
    let request = checkout.request(100).await;
    let (token, signature) = checkout.forge(&request, 20, |_, _| {});
    let mut bad = URL_SAFE_NO_PAD.decode(&signature).expect("b64");
    bad[10] ^= 0x40;
    expect_decline(
        &checkout,
        &request,
        (token.clone(), URL_SAFE_NO_PAD.encode(bad)),
        "BAD_CARD_SIGNATURE",
        "bad-sig",
    )
    .await;
    let mut unknown = request.clone();
    unknown["id"] = json!(encode_global_id("PaymentRequest", Uuid::new_v4()));
    expect_decline(
        &checkout,
        &unknown,
        (token.clone(), signature.clone()),
        "REQUEST_UNKNOWN",
        "unknown",
    )
    .await;
    authorized(
        &checkout,
        &request,
        (token.clone(), signature),
        "forged-but-valid",
    )
    .await;

    // The same number on another request; another number with the same card sequence.
    let request = checkout.request(100).await;
    let reused = {
        let parsed = Token::from_base64url(&token).expect("token");
        URL_SAFE_NO_PAD.encode(sign_payment(
            &SigningKey::from_bytes(&CARD_SEED),
            &parsed,
            &signed_fields(&request),
        ))
    };
    expect_decline(
        &checkout,
        &request,
        (token.clone(), reused),
        "NUMBER_ALREADY_USED",
        "reused-number",
    )
    .await;
    let same_sequence = checkout.forge(&request, 21, |body, _| body.sequence = 10_020);
    expect_decline(
        &checkout,
        &request,
        same_sequence,
        "SEQUENCE_REUSED",
        "reused-sequence",
    )
    .await;
    let genuine = checkout.tap(&request);
    authorized(&checkout, &request, genuine, "after-replays").await;

    // Deadlines are judged by the database clock; a late tap passes only under the offline floor.
    let db = checkout.app.hub.state.db.clone();
    let set_deadlines = |request: &Value, tap_offset: i64, acceptance_offset: i64| {
        let id = decode_global_id(request["id"].as_str().expect("id"));
        let now = chrono::Utc::now();
        let db = db.clone();
        async move {
            entities::payment_request::Entity::update_many()
                .col_expr(
                    entities::payment_request::Column::TapDeadline,
                    sea_orm::sea_query::Expr::value(now + chrono::Duration::seconds(tap_offset)),
                )
                .col_expr(
                    entities::payment_request::Column::AcceptanceDeadline,
                    sea_orm::sea_query::Expr::value(
                        now + chrono::Duration::seconds(acceptance_offset),
                    ),
                )
                .filter(sea_orm::ColumnTrait::eq(
                    &entities::payment_request::Column::Id,
                    id,
                ))
                .exec(&db)
                .await
                .expect("move the deadlines");
        }
    };
    let request = checkout.request(3_000).await;
    set_deadlines(&request, -3_600, -60).await;
    let tap = checkout.forge(&request, 30, |_, _| {});
    expect_decline(
        &checkout,
        &request,
        tap.clone(),
        "PAST_DEADLINE",
        "past-acceptance",
    )
    .await;
    set_deadlines(&request, -60, 600).await;
    expect_decline(
        &checkout,
        &request,
        tap.clone(),
        "PAST_DEADLINE",
        "late-above-floor",
    )
    .await;
    set_deadlines(&request, 60, 600).await;
    authorized(&checkout, &request, tap, "in-time").await;
    let request = checkout.request(300).await;
    set_deadlines(&request, -60, 600).await;
    let late = checkout.forge(&request, 31, |_, _| {});
    authorized(&checkout, &request, late, "late-under-floor").await;

    // Above the contactless limit: cardholder verification required.
    let request = checkout.request(6_000).await;
    let big = checkout.forge(&request, 32, |body, _| {
        body.restrictions.max_amount_minor = 10_000
    });
    expect_decline(
        &checkout,
        &request,
        big,
        "CVM_REQUIRED",
        "above-contactless-limit",
    )
    .await;
    checkout
        .app
        .graphql(Some(&checkout.member), "mutation($id: ID!) { cancelPaymentRequest(input: { id: $id }) { paymentRequest { status } } }", json!({ "id": request["id"] }))
        .await
        .data("/cancelPaymentRequest");

    // The balance dropped below the request meanwhile (an invoice was paid in full).
    let request = checkout.request(500).await;
    let member = checkout.member.clone();
    let invoice = checkout
        .app
        .graphql(
            Some(&member),
            "mutation($id: ID!) { raiseInvoice(input: { orderId: $id }) { invoice { id } } }",
            json!({ "id": checkout.order }),
        )
        .await
        .data("/raiseInvoice/invoice/id")
        .clone();
    checkout
        .app
        .graphql(
            Some(&member),
            "mutation($id: ID!) { payInvoice(input: { id: $id }) { invoice { status } } }",
            json!({ "id": invoice }),
        )
        .await
        .data("/payInvoice");
    let tap = checkout.forge(&request, 33, |_, _| {});
    expect_decline(
        &checkout,
        &request,
        tap,
        "AMOUNT_ABOVE_BALANCE",
        "balance-gone",
    )
    .await;
    checkout.app.stop().await;
}
on_both_backends!(every_decline_reason, every_decline_reason_consumes_nothing);

async fn limits_and_retired_keys(backend: Backend) {
    // A device cap of 10.00: the second payment of 8.00 on this device is over it.
    let mut checkout = Checkout::new_with(backend, 30, |config| {
        config.payment_limits.device_cap_minor = 1_000
    })
    .await;
    let request = checkout.request(800).await;
    let tap = checkout.tap(&request);
    authorized(&checkout, &request, tap, "first").await;
    let request = checkout.request(800).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap, "LIMIT_EXCEEDED", "over-cap").await;

    // A retired key whose validity has passed: its numbers are refused.
    let retired_seed = [0x64u8; 32];
    let not_after = chrono::Utc::now() + chrono::Duration::seconds(2);
    let key = checkout
        .app
        .graphql(Some(&checkout.bank_admin), "mutation($input: RegisterIssuerKeyInput!) { registerIssuerKey(input: $input) { issuerKey { id } } }",
            json!({ "input": { "keyId": 2, "publicKey": STANDARD.encode(SigningKey::from_bytes(&retired_seed).verifying_key().as_bytes()), "prefix": "400012", "notAfter": not_after.to_rfc3339() } }))
        .await
        .data("/registerIssuerKey/issuerKey/id")
        .clone();
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            "mutation($id: ID!) { retireIssuerKey(input: { id: $id }) { issuerKey { status } } }",
            json!({ "id": key }),
        )
        .await
        .data("/retireIssuerKey");
    // Wait (bounded) until the database clock has passed the key's validity.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while api::db::database_now(&checkout.app.hub.state.db)
        .await
        .expect("db time")
        <= not_after
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the database clock did not move"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let retired = checkout.forge(&request, 40, |body, keys| {
        body.key_id = 2;
        keys[0] = SigningKey::from_bytes(&retired_seed);
    });
    expect_decline(
        &checkout,
        &request,
        retired,
        "ISSUER_KEY_RETIRED",
        "retired",
    )
    .await;
    checkout.app.stop().await;
}
on_both_backends!(limits_and_retired, limits_and_retired_keys);

async fn card_velocity_requires_verification(backend: Backend) {
    // Two payments per card per day, at most 25.00: the third tap needs cardholder verification.
    let mut checkout = Checkout::new_with(backend, 30, |config| {
        config.payment_limits.card_velocity_count = 2;
        config.payment_limits.card_velocity_sum_minor = 2_500;
    })
    .await;
    for (i, amount) in [1_000, 1_000].into_iter().enumerate() {
        let request = checkout.request(amount).await;
        let tap = checkout.tap(&request);
        authorized(&checkout, &request, tap, &format!("velocity-{i}")).await;
    }
    let request = checkout.request(100).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap, "CVM_REQUIRED", "velocity-count").await;
    checkout.app.stop().await;

    // The sum alone, and distinct terminals alone, trip the same rule.
    let mut checkout = Checkout::new_with(backend, 30, |config| {
        config.payment_limits.card_velocity_sum_minor = 1_500
    })
    .await;
    let request = checkout.request(1_000).await;
    let tap = checkout.tap(&request);
    authorized(&checkout, &request, tap, "sum-first").await;
    let request = checkout.request(600).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap, "CVM_REQUIRED", "velocity-sum").await;
    checkout.app.stop().await;
}
on_both_backends!(card_velocity, card_velocity_requires_verification);

/// Sends `submission` from many tasks over both replicas; returns every final answer (retrying a
/// retryable CONFLICT, as a reader agent does).
async fn storm(
    checkout: &Checkout,
    urls: &[String],
    request: &Value,
    submissions: Vec<((String, String), String)>,
) -> Vec<Value> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let submissions = std::sync::Arc::new(std::sync::Mutex::new(submissions));
    let mut tasks = Vec::new();
    for task in 0..32 {
        let (client, url, token, request, submissions) = (
            client.clone(),
            urls[task % urls.len()].clone(),
            checkout.device_token(),
            request.clone(),
            submissions.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let next = submissions.lock().expect("lock").pop();
                let Some(((tap_token, signature), key)) = next else { break };
                let variables = json!({ "input": { "requestId": request["id"], "token": tap_token, "cardSignature": signature, "idempotencyKey": key } });
                let answer = loop {
                    let response = hub_tests::post_graphql(&client, &url, &token, PAY, variables.clone()).await;
                    if response.body.pointer("/errors/0/extensions/retryable").and_then(Value::as_bool) == Some(true) {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                    break response.data("/payWithOneTimeNumber").clone();
                };
                answers.push(answer);
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("task"));
    }
    answers
}

async fn payments_for(checkout: &Checkout, request: &Value) -> usize {
    let id = decode_global_id(request["id"].as_str().expect("id"));
    entities::payment::Entity::find()
        .filter(sea_orm::ColumnTrait::eq(
            &entities::payment::Column::RequestId,
            id,
        ))
        .all(&checkout.app.hub.state.db)
        .await
        .expect("payments")
        .len()
}

async fn replay_storms_on_two_replicas(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 10, |config| {
        config.payment_limits.card_velocity_count = 1_000
    })
    .await;
    let replica = checkout.app.spawn_replica().await;
    let urls = [checkout.app.base_url.clone(), replica.url.clone()];

    // One valid submission, 1,000 times, each with its own idempotency key: exactly one payment.
    let request = checkout.request(500).await;
    let tap = checkout.tap(&request);
    let answers = storm(
        &checkout,
        &urls,
        &request,
        (0..1_000)
            .map(|i| (tap.clone(), format!("storm-{i}")))
            .collect(),
    )
    .await;
    assert_eq!(answers.len(), 1_000);
    assert_eq!(
        answers
            .iter()
            .filter(|a| a["status"] == "AUTHORIZED")
            .count(),
        1,
        "exactly one authorization"
    );
    // Every other answer is a decline that names the replay, counted (not "all of none").
    let replays = answers
        .iter()
        .filter(|a| {
            a["status"] == "DECLINED"
                && (a["declineReason"] == "REQUEST_ALREADY_PAID"
                    || a["declineReason"] == "NUMBER_ALREADY_USED")
        })
        .count();
    assert_eq!(replays, 999, "replays are declined as replays");
    assert_eq!(payments_for(&checkout, &request).await, 1);

    // The same submission under one key, 1,000 times: one payment, every caller the same answer.
    let request = checkout.request(500).await;
    let tap = checkout.tap(&request);
    let answers = storm(
        &checkout,
        &urls,
        &request,
        (0..1_000)
            .map(|_| (tap.clone(), "one-key".to_owned()))
            .collect(),
    )
    .await;
    let first = &answers[0];
    assert_eq!(first["status"], "AUTHORIZED");
    assert!(
        answers.iter().all(|a| a == first),
        "every caller got the original answer"
    );
    assert_eq!(payments_for(&checkout, &request).await, 1);

    // A double tap (two numbers of one card) and a second card on the same request: one payment.
    let second_card = [0x65u8; 32];
    checkout
        .app
        .graphql(Some(&checkout.bank_admin), "mutation($input: RegisterCardInput!) { registerCard(input: $input) { card { id } } }",
            json!({ "input": { "cardId": Uuid::from_bytes([0x78; 16]).to_string(), "publicKey": STANDARD.encode(SigningKey::from_bytes(&second_card).verifying_key().as_bytes()), "lastFour": "5678" } }))
        .await
        .data("/registerCard");
    let request = checkout.request(500).await;
    let first_tap = checkout.tap(&request);
    let second_tap = checkout.tap(&request);
    let other_card = checkout.forge(&request, 60, |body, keys| {
        body.card_id = [0x78; 16];
        keys[1] = SigningKey::from_bytes(&second_card);
        body.card_public_key = keys[1].verifying_key().to_bytes();
    });
    let submissions = (0..300)
        .map(|i| match i % 3 {
            0 => (first_tap.clone(), format!("tap-a-{i}")),
            1 => (second_tap.clone(), format!("tap-b-{i}")),
            _ => (other_card.clone(), format!("card-b-{i}")),
        })
        .collect();
    let answers = storm(&checkout, &urls, &request, submissions).await;
    assert_eq!(
        answers
            .iter()
            .filter(|a| a["status"] == "AUTHORIZED")
            .count(),
        1,
        "one payment for the request"
    );
    let refused = answers
        .iter()
        .filter(|a| {
            a["status"] == "DECLINED"
                && [
                    "REQUEST_ALREADY_PAID",
                    "NUMBER_ALREADY_USED",
                    "SEQUENCE_REUSED",
                ]
                .contains(&a["declineReason"].as_str().unwrap_or_default())
        })
        .count();
    assert_eq!(
        refused, 299,
        "every other tap is declined as already paid or used"
    );
    assert_eq!(payments_for(&checkout, &request).await, 1);
    drop(replica);
    checkout.app.stop().await;
}
on_postgres!(replay_storm, replay_storms_on_two_replicas);

impl Checkout {
    /// Another placed order of `quantity` coffees (one open payment request per order).
    async fn new_order(&self, quantity: i64) -> String {
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

    async fn request_for(&self, order: &str, amount: i64) -> Value {
        self.app
            .graphql(Some(&self.member), REQUEST, json!({ "input": {
                "orderId": order, "terminalId": encode_global_id("Device", self.device), "amountMinor": amount, "currency": "EUR" } }))
            .await
            .data("/requestPayment/paymentRequest")
            .clone()
    }
}

/// One submission; `None` when the hub gave no answer (it died, the connection broke).
async fn submit(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    variables: &Value,
) -> Option<Value> {
    loop {
        let response = client
            .post(format!("{url}/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": PAY, "variables": variables }))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        if body
            .pointer("/errors/0/extensions/retryable")
            .and_then(Value::as_bool)
            == Some(true)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        return Some(body["data"]["payWithOneTimeNumber"].clone());
    }
}

async fn a_killed_replica_loses_no_tap(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 1, |config| {
        let limits = &mut config.payment_limits;
        limits.card_velocity_count = 1_000;
        limits.card_velocity_sum_minor = 10_000_000;
    })
    .await;
    let mut replica = checkout.app.spawn_replica().await;
    // 40 taps, each on its own order's request.
    let mut taps = Vec::new();
    for i in 0..40 {
        let order = checkout.new_order(1).await;
        let request = checkout.request_for(&order, 100).await;
        let (token, signature) = checkout.tap(&request);
        let variables = json!({ "input": { "requestId": request["id"], "token": token, "cardSignature": signature, "idempotencyKey": format!("crash-{i}") } });
        taps.push((request, variables));
    }
    // 8 readers submit to the replica; it is killed (-9) once a few answers are back.
    let client = reqwest::Client::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let queue = std::sync::Arc::new(std::sync::Mutex::new((0..taps.len()).collect::<Vec<_>>()));
    let taps = std::sync::Arc::new(taps);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, url, token, answered, queue, taps) = (
            client.clone(),
            replica.url.clone(),
            checkout.device_token(),
            answered.clone(),
            queue.clone(),
            taps.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let Some(index) = queue.lock().expect("lock").pop() else {
                    break;
                };
                let sent_at = std::time::Instant::now();
                let answer = submit(&client, &url, &token, &taps[index].1).await;
                if answer.is_some() {
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                results.push((index, sent_at, answer));
            }
            results
        }));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "no answers from the replica"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let killed_at = std::time::Instant::now();
    replica.kill();
    let mut outcomes: Vec<Option<Value>> = vec![None; taps.len()];
    let mut in_flight = 0;
    for worker in workers {
        for (index, sent_at, answer) in worker.await.expect("worker") {
            // Sent before the kill and never answered: the replica died with it in hand.
            if answer.is_none() && sent_at < killed_at {
                in_flight += 1;
            }
            outcomes[index] = answer;
        }
    }
    assert!(
        in_flight > 0,
        "the kill landed on an idle replica: no submission was in flight"
    );
    let unanswered: Vec<usize> = (0..taps.len()).filter(|i| outcomes[*i].is_none()).collect();
    assert!(
        !unanswered.is_empty(),
        "the kill landed after the load: nothing to recover"
    );
    // A new replica comes up; the reader resubmits what it had no answer for, with the same keys.
    let restarted = checkout.app.spawn_replica().await;
    let token = checkout.device_token();
    for index in &unanswered {
        outcomes[*index] = submit(&client, &restarted.url, &token, &taps[*index].1).await;
    }
    for (index, outcome) in outcomes.iter().enumerate() {
        let outcome = outcome.as_ref().expect("every tap has an answer now");
        assert_eq!(outcome["status"], "AUTHORIZED", "tap {index}: {outcome}");
        assert_eq!(
            payments_for(&checkout, &taps[index].0).await,
            1,
            "tap {index} paid exactly once"
        );
    }
    let payments = entities::payment::Entity::find()
        .all(&checkout.app.hub.state.db)
        .await
        .expect("payments");
    assert_eq!(
        payments.len(),
        taps.len(),
        "every tap accounted for exactly once"
    );
    drop(restarted);
    checkout.app.stop().await;
}
on_postgres!(crash_recovery, a_killed_replica_loses_no_tap);

/// `card` re-signs a used token for another request, as a thief holding the card key could.
fn replay_for(token: &str, request: &Value) -> (String, String) {
    let parsed = Token::from_base64url(token).expect("token");
    let signature = sign_payment(
        &SigningKey::from_bytes(&CARD_SEED),
        &parsed,
        &signed_fields(request),
    );
    (token.to_owned(), URL_SAFE_NO_PAD.encode(signature))
}

async fn pay_at(
    checkout: &Checkout,
    url: &str,
    request: &Value,
    tap: &(String, String),
    key: &str,
) -> Value {
    pay_as(checkout, url, &checkout.device_token(), request, tap, key).await
}

async fn pay_as(
    checkout: &Checkout,
    url: &str,
    device_token: &str,
    request: &Value,
    tap: &(String, String),
    key: &str,
) -> Value {
    hub_tests::post_graphql(
        &checkout.app.client,
        url,
        device_token,
        PAY,
        json!({ "input": { "requestId": request["id"], "token": tap.0, "cardSignature": tap.1, "idempotencyKey": key } }),
    )
    .await
    .data("/payWithOneTimeNumber")
    .clone()
}

/// Key ids under which numbers were recorded, in order.
async fn recorded_key_ids(checkout: &Checkout) -> Vec<i32> {
    let mut ids: Vec<i32> = entities::number_use::Entity::find()
        .all(&checkout.app.hub.state.db)
        .await
        .expect("number uses")
        .into_iter()
        .map(|used| used.hash_key_id)
        .collect();
    ids.sort();
    ids
}

/// Rotating the number-hash key: the operator adds key 2 with `hub keygen --secret --rotate`; numbers
/// used under key 1 stay checked; new ones are recorded under key 2; a replica still on the old ring
/// is stopped by the card sequence; and a ring that dropped key 1 too early is refused at start.
async fn number_hash_key_rotation(backend: Backend) {
    let mut checkout = Checkout::new(backend).await;
    let first = checkout.request(100).await;
    let first_tap = checkout.tap(&first);
    authorized(&checkout, &first, first_tap.clone(), "before-rotation").await;
    assert_eq!(recorded_key_ids(&checkout).await, vec![1]);

    let rotated = checkout.app.data_dir().join("rotated-number-hash.key");
    std::fs::copy(
        checkout.app.hub.state.config.number_hash_key_path(),
        &rotated,
    )
    .expect("copy the key ring");
    let rotation = std::process::Command::new(hub_tests::hub_binary())
        .args(["keygen", "--secret", "--rotate", "--out"])
        .arg(&rotated)
        .output()
        .expect("hub keygen runs");
    assert!(rotation.status.success(), "{rotation:?}");
    assert!(
        String::from_utf8_lossy(&rotation.stderr).contains("number-hash key 2 is now current"),
        "{rotation:?}"
    );
    let replica = checkout.app.spawn_replica_with_hash_key(&rotated).await;

    // At the rotated replica: the number used under key 1 is still known by its key-1 hash (its card
    // sequence alone would say SEQUENCE_REUSED), and a fresh number is recorded under key 2.
    let second = checkout.request(100).await;
    let replayed = pay_at(
        &checkout,
        &replica.url,
        &second,
        &replay_for(&first_tap.0, &second),
        "replay-after-rotation",
    )
    .await;
    assert_eq!(replayed["status"], "DECLINED", "{replayed}");
    assert_eq!(
        replayed["declineReason"], "NUMBER_ALREADY_USED",
        "{replayed}"
    );
    let second_tap = checkout.tap(&second);
    let paid = pay_at(
        &checkout,
        &replica.url,
        &second,
        &second_tap,
        "after-rotation",
    )
    .await;
    assert_eq!(paid["status"], "AUTHORIZED", "{paid}");
    assert_eq!(recorded_key_ids(&checkout).await, vec![1, 2]);

    // Mid-rollout, the in-process hub still runs the old ring: it cannot know the key-2 hash, yet the
    // number cannot be used again.
    let third = checkout.request(100).await;
    let stale = pay_at(
        &checkout,
        &checkout.app.base_url,
        &third,
        &replay_for(&second_tap.0, &third),
        "replay-at-old-ring",
    )
    .await;
    assert_eq!(stale["status"], "DECLINED", "{stale}");
    assert_eq!(stale["declineReason"], "SEQUENCE_REUSED", "{stale}");

    // Dropping key 1 while a number hashed under it is still valid: the hub refuses to start and says
    // which key and until when.
    let ring = std::fs::read_to_string(&rotated).expect("ring");
    let only_new = checkout.app.data_dir().join("only-key-2.key");
    std::fs::write(
        &only_new,
        ring.lines()
            .filter(|line| line.starts_with("2 "))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("write ring");
    let log = checkout.app.replica_refuses_to_start(&only_new).await;
    assert!(
        log.contains("number-hash key 1 is missing from the key file"),
        "{log}"
    );
    let keys: Vec<&str> = ring
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert_eq!(keys.len(), 2, "{ring}");
    for key in keys {
        assert!(!log.contains(key), "the log never shows a key");
    }
    drop(replica);
    checkout.app.stop().await;
}
on_postgres!(hash_key_rotation, number_hash_key_rotation);

/// Suspicious authorizations are flagged for review, never declined: a card whose sequence jumps past
/// the gap window (numbers generated and never submitted), and a card paying at another location
/// shortly after paying here.
async fn suspicious_payments_are_flagged(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 10, |config| {
        config.payment_limits.sequence_gap_window = 4;
    })
    .await;
    let first = checkout.request(100).await;
    let tap = checkout.tap(&first);
    let ordinary = checkout.pay(&first, &tap.0, &tap.1, "ordinary").await;
    assert_eq!(ordinary["status"], "AUTHORIZED", "{ordinary}");
    assert_eq!(ordinary["payment"]["flags"], json!([]), "{ordinary}");

    // Five numbers generated at the reader and never submitted: sequence 7 after 1.
    let second = checkout.request(100).await;
    for _ in 0..5 {
        checkout.tap(&second);
    }
    let tap = checkout.tap(&second);
    let gap = checkout.pay(&second, &tap.0, &tap.1, "after-a-gap").await;
    assert_eq!(gap["status"], "AUTHORIZED", "{gap}");
    assert_eq!(gap["payment"]["flags"], json!(["SEQUENCE_GAP"]), "{gap}");

    // The same card minutes later at a terminal of another shop.
    let admin = checkout
        .app
        .token(checkout.app.retailer_id, Role::Admin)
        .await;
    let location = checkout
        .app
        .graphql(Some(&admin), "mutation { createLocation(input: { name: \"Other shop\", kind: SHOP, street: \"s\", city: \"far away\", postalCode: \"p\", countryCode: \"DE\" }) { location { id } } }", json!({}))
        .await
        .data("/createLocation/location/id")
        .clone();
    let far_key = SigningKey::from_bytes(&[0x64; 32]);
    let far_device = checkout
        .app
        .graphql(Some(&admin), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
            json!({ "input": { "name": "Far till", "locationId": location, "publicKey": STANDARD.encode(far_key.verifying_key().as_bytes()) } }))
        .await
        .data("/registerDevice/device/id")
        .as_str()
        .expect("id")
        .to_owned();
    let far_request = checkout
        .app
        .graphql(Some(&checkout.member), REQUEST, json!({ "input": {
            "orderId": checkout.order, "terminalId": far_device, "amountMinor": 100, "currency": "EUR" } }))
        .await
        .data("/requestPayment/paymentRequest")
        .clone();
    let tap = checkout.tap(&far_request);
    let far_token = device_token(decode_global_id(&far_device), &far_key);
    let base_url = checkout.app.base_url.clone();
    let distant = pay_as(
        &checkout,
        &base_url,
        &far_token,
        &far_request,
        &tap,
        "far-away",
    )
    .await;
    assert_eq!(distant["status"], "AUTHORIZED", "{distant}");
    assert_eq!(
        distant["payment"]["flags"],
        json!(["DISTANT_TERMINALS"]),
        "{distant}"
    );

    // The retailer and the card's issuer see the flags on the payment.
    for token in [&checkout.member, &checkout.bank_admin] {
        let payment = checkout
            .app
            .graphql(
                Some(token),
                "query($id: ID!) { node(id: $id) { ... on Payment { flags } } }",
                json!({ "id": distant["payment"]["id"] }),
            )
            .await;
        assert_eq!(payment.data("/node/flags"), &json!(["DISTANT_TERMINALS"]));
    }
    checkout.app.stop().await;
}
on_both_backends!(review_flags, suspicious_payments_are_flagged);

impl Checkout {
    /// Another terminal at the shop, with its own key (seeded by `seed`).
    async fn add_terminal(&self, seed: u8) -> (String, SigningKey) {
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
        let key = SigningKey::from_bytes(&[seed; 32]);
        let device = self
            .app
            .graphql(Some(&admin), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
                json!({ "input": { "name": format!("Till {seed}"), "locationId": location, "publicKey": STANDARD.encode(key.verifying_key().as_bytes()) } }))
            .await
            .data("/registerDevice/device/id")
            .as_str()
            .expect("id")
            .to_owned();
        (device, key)
    }

    /// Another card of the bank (its id and key seeded by `seed`), registered by the bank.
    async fn add_card(&self, seed: u8) -> ([u8; 16], SigningKey) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let card_id = [seed; 16];
        self.app
            .graphql(Some(&self.bank_admin), "mutation($input: RegisterCardInput!) { registerCard(input: $input) { card { id } } }",
                json!({ "input": { "cardId": Uuid::from_bytes(card_id), "publicKey": STANDARD.encode(key.verifying_key().as_bytes()), "lastFour": "4321" } }))
            .await
            .data("/registerCard/card/id");
        (card_id, key)
    }

    async fn request_at(&self, order: &str, terminal: &str, amount: i64) -> Value {
        self.app
            .graphql(Some(&self.member), REQUEST, json!({ "input": {
                "orderId": order, "terminalId": terminal, "amountMinor": amount, "currency": "EUR" } }))
            .await
            .data("/requestPayment/paymentRequest")
            .clone()
    }
}

/// One limit raced: `taps` submissions of `amount`, spread over `terminals` terminals and `cards`
/// cards, all sent at once to two replicas on one database.
struct LimitRace {
    terminals: usize,
    cards: usize,
    taps: usize,
    amount: i64,
    authorized: usize,
    reason: &'static str,
}

async fn race_one_limit(configure: impl FnOnce(&mut api::config::PaymentLimits), race: LimitRace) {
    let checkout = Checkout::new_with(Backend::Postgres, 1, |config| {
        let limits = &mut config.payment_limits;
        // Everything generous but the limit under test.
        limits.card_velocity_count = 1_000;
        limits.card_velocity_sum_minor = 1_000_000_000;
        limits.card_velocity_terminals = 1_000;
        limits.device_cap_minor = 1_000_000_000;
        configure(limits);
    })
    .await;
    let replica = checkout.app.spawn_replica().await;
    let urls = [checkout.app.base_url.clone(), replica.url.clone()];
    let mut terminals = Vec::new();
    for t in 0..race.terminals {
        terminals.push(checkout.add_terminal(0xA0 + t as u8).await);
    }
    let mut cards = vec![(CARD_ID, SigningKey::from_bytes(&CARD_SEED))];
    for c in 1..race.cards {
        cards.push(checkout.add_card(0xC0 + c as u8).await);
    }
    let mut submissions = Vec::new();
    for i in 0..race.taps {
        let (terminal, terminal_key) = &terminals[i % terminals.len()];
        let (card_id, card_key) = &cards[i % cards.len()];
        let order = checkout.new_order(1).await;
        let request = checkout.request_at(&order, terminal, race.amount).await;
        let (token, signature) = checkout.forge(&request, i as u64, |body, keys| {
            body.card_id = *card_id;
            body.card_public_key = card_key.verifying_key().to_bytes();
            keys[1] = card_key.clone();
        });
        let variables = json!({ "input": { "requestId": request["id"], "token": token, "cardSignature": signature, "idempotencyKey": format!("race-{i}") } });
        let device_token = device_token(decode_global_id(terminal), terminal_key);
        submissions.push((urls[i % urls.len()].clone(), device_token, variables));
    }
    // Every submission in flight at once, half on each replica.
    let client = reqwest::Client::new();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(submissions.len()));
    let tasks: Vec<_> = submissions
        .into_iter()
        .map(|(url, token, variables)| {
            let (client, start) = (client.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                submit(&client, &url, &token, &variables).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("an answer"));
    }
    let authorized = outcomes
        .iter()
        .filter(|o| o["status"] == "AUTHORIZED")
        .count();
    assert_eq!(
        authorized, race.authorized,
        "{}: the limit held under concurrency: {outcomes:?}",
        race.reason
    );
    for outcome in outcomes.iter().filter(|o| o["status"] != "AUTHORIZED") {
        assert_eq!(outcome["declineReason"], race.reason, "{outcome}");
    }
    let payments = entities::payment::Entity::find()
        .all(&checkout.app.hub.state.db)
        .await
        .expect("payments");
    assert_eq!(payments.len(), race.authorized, "{}", race.reason);
    drop(replica);
    checkout.app.stop().await;
}

/// Each limit is decided under the card's and the device's locks: simultaneous taps on two replicas
/// authorize exactly as many payments as the limit allows.
async fn limits_hold_under_concurrency(_backend: Backend) {
    // Payments per card: 16 taps of one card at 8 terminals, 4 allowed.
    race_one_limit(
        |limits| limits.card_velocity_count = 4,
        LimitRace {
            terminals: 8,
            cards: 1,
            taps: 16,
            amount: 100,
            authorized: 4,
            reason: "CVM_REQUIRED",
        },
    )
    .await;
    // Sum per card: 16 taps of 10.00 at 8 terminals, 25.00 allowed.
    race_one_limit(
        |limits| limits.card_velocity_sum_minor = 2_500,
        LimitRace {
            terminals: 8,
            cards: 1,
            taps: 16,
            amount: 1_000,
            authorized: 2,
            reason: "CVM_REQUIRED",
        },
    )
    .await;
    // Distinct terminals per card: 12 terminals at once, 3 allowed.
    race_one_limit(
        |limits| limits.card_velocity_terminals = 3,
        LimitRace {
            terminals: 12,
            cards: 1,
            taps: 12,
            amount: 100,
            authorized: 3,
            reason: "CVM_REQUIRED",
        },
    )
    .await;
    // Value per device: 16 cards at one terminal, 25.00 allowed.
    race_one_limit(
        |limits| limits.device_cap_minor = 2_500,
        LimitRace {
            terminals: 1,
            cards: 16,
            taps: 16,
            amount: 1_000,
            authorized: 2,
            reason: "LIMIT_EXCEEDED",
        },
    )
    .await;
}
on_postgres!(limits_race, limits_hold_under_concurrency);

/// Evidence is shown to an issuer only when that issuer's signature verified: a junk token naming a
/// stranger as issuer does not reveal the merchant's requests to it.
async fn only_verified_issuers_see_declines(backend: Backend) {
    let checkout = Checkout::new(backend).await;
    let app = &checkout.app;
    let nosy = app
        .create_organization("Nosy Bank", OrganizationKind::FinancialProvider)
        .await;
    let nosy_admin = app.token(nosy, Role::Admin).await;
    let request = checkout.request(500).await;
    // Names the stranger as issuer, signed by nobody it registered.
    let junk = checkout.forge(&request, 1, |body, keys| {
        body.issuer = nosy.into_bytes();
        keys[0] = SigningKey::from_bytes(&[0x55; 32]);
    });
    let outcome = checkout.pay(&request, &junk.0, &junk.1, "junk").await;
    assert_eq!(outcome["declineReason"], "UNKNOWN_ISSUER_KEY", "{outcome}");
    // Names the genuine bank, with a bad signature: the bank does not see it either.
    let bad = checkout.forge(&request, 2, |_, keys| {
        keys[0] = SigningKey::from_bytes(&[0x56; 32]);
    });
    let outcome = checkout.pay(&request, &bad.0, &bad.1, "bad").await;
    assert_eq!(
        outcome["declineReason"], "BAD_ISSUER_SIGNATURE",
        "{outcome}"
    );
    // A verified token declined later on (an amount above the card's domain limit) is the bank's to see.
    let limited = checkout.forge(&request, 3, |body, _| {
        body.restrictions.max_amount_minor = 100;
    });
    let outcome = checkout
        .pay(&request, &limited.0, &limited.1, "limited")
        .await;
    assert_eq!(outcome["declineReason"], "DOMAIN_RESTRICTION", "{outcome}");

    let declines = "{ paymentDeclines { totalCount edges { node { reason } } } }";
    let seen = |token: String| async move {
        app.graphql(Some(&token), declines, json!({}))
            .await
            .data("/paymentDeclines")
            .clone()
    };
    let merchant = seen(checkout.member.clone()).await;
    assert_eq!(merchant["totalCount"], 3, "the merchant sees every decline");
    let nosy_view = seen(nosy_admin).await;
    assert_eq!(nosy_view["totalCount"], 0, "{nosy_view}");
    let bank_view = seen(checkout.bank_admin.clone()).await;
    assert_eq!(bank_view["totalCount"], 1, "{bank_view}");
    assert_eq!(
        bank_view["edges"][0]["node"]["reason"],
        "DOMAIN_RESTRICTION"
    );
    checkout.app.stop().await;
}
on_both_backends!(
    declines_for_verified_issuers,
    only_verified_issuers_see_declines
);

/// The challenge is shown to the member who opened the request and to the terminal's device only.
async fn challenges_are_shown_to_requester_and_terminal(backend: Backend) {
    let checkout = Checkout::new(backend).await;
    let app = &checkout.app;
    let request = checkout.request(500).await;
    assert!(request["challenge"].is_string(), "the requester sees it");
    let query = "query($id: ID!) { node(id: $id) { ... on PaymentRequest { id challenge } } }";
    let id = request["id"].clone();
    let challenge_for = |token: String| {
        let id = id.clone();
        async move {
            app.graphql(Some(&token), query, json!({ "id": id }))
                .await
                .data("/node/challenge")
                .clone()
        }
    };
    assert_eq!(
        challenge_for(checkout.member.clone()).await,
        request["challenge"]
    );
    let viewer = app.token(app.retailer_id, Role::Viewer).await;
    assert_eq!(
        challenge_for(viewer).await,
        Value::Null,
        "another member of the merchant"
    );
    let colleague = app
        .token_for(app.retailer_id, "colleague", Role::Member)
        .await;
    assert_eq!(challenge_for(colleague.clone()).await, Value::Null);
    let admin = app.token(app.retailer_id, Role::Admin).await;
    assert_eq!(challenge_for(admin).await, Value::Null);
    let listed = app
        .graphql(
            Some(&colleague),
            "{ paymentRequests { edges { node { challenge } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed.data("/paymentRequests/edges/0/node/challenge"),
        &Value::Null
    );
    let device_view = app
        .graphql(
            Some(&checkout.device_token()),
            "{ paymentRequests { edges { node { challenge } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        device_view.data("/paymentRequests/edges/0/node/challenge"),
        &request["challenge"],
        "the terminal's device signs it with the card"
    );
    checkout.app.stop().await;
}
on_both_backends!(
    challenge_visibility,
    challenges_are_shown_to_requester_and_terminal
);

/// Two issuers registering overlapping prefixes at the same moment: exactly one wins each round, the
/// other gets CONFLICT (PostgreSQL: on two replicas, held by the exclusion constraint; SQLite: one
/// hub, held by its single writer).
async fn overlapping_prefixes_race(backend: Backend) {
    let app = TestApp::start(backend).await;
    let replica = match backend {
        Backend::Postgres => Some(app.spawn_replica().await),
        Backend::Sqlite => None,
    };
    let urls = [
        app.base_url.clone(),
        replica
            .as_ref()
            .map_or(app.base_url.clone(), |r| r.url.clone()),
    ];
    let mut admins = Vec::new();
    for name in ["Race Bank A", "Race Bank B"] {
        let bank = app
            .create_organization(name, OrganizationKind::FinancialProvider)
            .await;
        admins.push(app.token(bank, Role::Admin).await);
    }
    let register = "mutation($input: RegisterIssuerKeyInput!) { registerIssuerKey(input: $input) { issuerKey { id } } }";
    let not_after = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    for round in 0..12u32 {
        // Bank A claims 5100rr, bank B the narrower 5100rr7: they overlap.
        let prefixes = [format!("5100{round:02}"), format!("5100{round:02}7")];
        let attempts: Vec<_> = (0..2)
            .map(|i| {
                let (client, url, token) = (app.client.clone(), urls[i].clone(), admins[i].clone());
                let key = SigningKey::from_bytes(&[0x30 + round as u8 * 2 + i as u8; 32]);
                let variables = json!({ "input": { "keyId": round + 1, "publicKey": STANDARD.encode(key.verifying_key().as_bytes()),
                    "prefix": prefixes[i], "notAfter": not_after } });
                tokio::spawn(async move {
                    hub_tests::post_graphql(&client, &url, &token, register, variables).await
                })
            })
            .collect();
        let mut codes = Vec::new();
        for attempt in attempts {
            let response = attempt.await.expect("task");
            codes.push(response.error_code().map(str::to_owned));
        }
        let won = codes.iter().filter(|code| code.is_none()).count();
        assert_eq!(
            won, 1,
            "round {round}: exactly one registration wins: {codes:?}"
        );
        assert!(
            codes.iter().flatten().all(|code| code == "CONFLICT"),
            "round {round}: the loser is told CONFLICT: {codes:?}"
        );
    }
    if backend == Backend::Postgres {
        // The database itself refuses an overlapping range of another issuer, whatever the code checks.
        use sea_orm::ConnectionTrait;
        let insert = |bank: &str, prefix: &str| {
            format!(
                "INSERT INTO issuer_key (id, owner_organization_id, key_id, public_key, prefix, \
                 not_after, status, version, created_at, updated_at) \
                 SELECT gen_random_uuid(), o.id, 99, '\\x00', '{prefix}', now(), 'ACTIVE', 1, now(), now() \
                 FROM organization o WHERE o.name = '{bank}'"
            )
        };
        let db = &app.hub.state.db;
        db.execute_unprepared(&insert("Race Bank A", "520000"))
            .await
            .expect("a fresh range");
        let refused = db
            .execute_unprepared(&insert("Race Bank B", "5200001"))
            .await;
        let err = refused.expect_err("an overlapping range is refused by the database");
        assert!(
            err.to_string()
                .contains("ex_issuer_key_number_range_disjoint"),
            "{err}"
        );
    }
    drop(replica);
    app.stop().await;
}
on_both_backends!(prefix_race, overlapping_prefixes_race);

/// The decline reasons that depend on state (a paid, cancelled or blocked record, a revoked key, a
/// token's amount limit, the distinct-terminal velocity): each consumes nothing (fingerprint), and a
/// genuine tap afterwards pays wherever one still can.
async fn stateful_declines_consume_nothing(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 60, |config| {
        let limits = &mut config.payment_limits;
        limits.card_velocity_count = 1_000;
        limits.card_velocity_sum_minor = 10_000_000;
        limits.device_cap_minor = 10_000_000;
        limits.card_velocity_terminals = 2;
    })
    .await;
    let member = checkout.member.clone();
    let bank_admin = checkout.bank_admin.clone();

    // DOMAIN_RESTRICTION by amount: the token allows 0.50, the request asks 1.00.
    let request = checkout.request(100).await;
    let capped = checkout.forge(&request, 1, |body, _| {
        body.restrictions.max_amount_minor = 50
    });
    expect_decline(
        &checkout,
        &request,
        capped,
        "DOMAIN_RESTRICTION",
        "amount-cap",
    )
    .await;
    let genuine = checkout.tap(&request);
    authorized(&checkout, &request, genuine, "after-amount-cap").await;

    // REQUEST_ALREADY_PAID: the request above is paid; an unused number for it is declined and
    // stays unused (it pays the next request).
    let unused = checkout.forge(&request, 2, |_, _| {});
    expect_decline(
        &checkout,
        &request,
        unused.clone(),
        "REQUEST_ALREADY_PAID",
        "paid",
    )
    .await;
    let next = checkout.request(100).await;
    let unused = replay_for(&unused.0, &next);
    authorized(&checkout, &next, unused, "unused-number-pays").await;

    // REQUEST_CANCELLED.
    let request = checkout.request(100).await;
    checkout
        .app
        .graphql(Some(&member), "mutation($id: ID!) { cancelPaymentRequest(input: { id: $id }) { paymentRequest { status } } }", json!({ "id": request["id"] }))
        .await
        .data("/cancelPaymentRequest");
    let tap = checkout.tap(&request);
    expect_decline(
        &checkout,
        &request,
        tap.clone(),
        "REQUEST_CANCELLED",
        "cancelled",
    )
    .await;
    let next = checkout.request(100).await;
    authorized(
        &checkout,
        &next,
        replay_for(&tap.0, &next),
        "after-cancelled",
    )
    .await;

    // CARD_BLOCKED: declined while blocked, paid once unblocked.
    assert_eq!(
        step_card(&checkout, &bank_admin, "blockCard").await,
        "BLOCKED"
    );
    let request = checkout.request(100).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap.clone(), "CARD_BLOCKED", "blocked").await;
    assert_eq!(
        step_card(&checkout, &bank_admin, "unblockCard").await,
        "ACTIVE"
    );
    authorized(&checkout, &request, tap, "unblocked").await;

    // Distinct terminals per card: a second terminal is fine, a third needs verification.
    let mut seen = Vec::new();
    for seed in [0xB1u8, 0xB2] {
        let (terminal, key) = checkout.add_terminal(seed).await;
        let order = checkout.new_order(1).await;
        let request = checkout.request_at(&order, &terminal, 100).await;
        let tap = checkout.tap(&request);
        let url = checkout.app.base_url.clone();
        let token = device_token(decode_global_id(&terminal), &key);
        seen.push(
            pay_as(
                &checkout,
                &url,
                &token,
                &request,
                &tap,
                &format!("terminal-{seed}"),
            )
            .await,
        );
    }
    assert_eq!(seen[0]["status"], "AUTHORIZED", "{}", seen[0]);
    assert_eq!(seen[1]["declineReason"], "CVM_REQUIRED", "{}", seen[1]);

    // ISSUER_KEY_REVOKED: every number under the key dies at once; nothing else changes.
    checkout
        .app
        .graphql(
            Some(&bank_admin),
            "mutation($id: ID!) { revokeIssuerKey(input: { id: $id }) { issuerKey { status } } }",
            json!({ "id": checkout.key_gid }),
        )
        .await
        .data("/revokeIssuerKey");
    let request = checkout.request(100).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap, "ISSUER_KEY_REVOKED", "revoked").await;
    checkout.app.stop().await;
}
on_both_backends!(stateful_declines, stateful_declines_consume_nothing);

/// Blocks or unblocks the checkout's card as its issuer; returns the new status.
async fn step_card(checkout: &Checkout, bank_admin: &str, mutation: &str) -> Value {
    checkout
        .app
        .graphql(
            Some(bank_admin),
            &format!(
                "mutation($id: ID!) {{ {mutation}(input: {{ id: $id }}) {{ card {{ status }} }} }}"
            ),
            json!({ "id": checkout.card_gid }),
        )
        .await
        .data(&format!("/{mutation}/card/status"))
        .clone()
}

/// Review flags stay off at their bounds: a sequence jump of exactly the window, and a payment at
/// another shop once the distant-terminal window has passed (with a payment inside it as the
/// positive control).
async fn review_flags_respect_their_bounds(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 10, |config| {
        config.payment_limits.sequence_gap_window = 4;
        config.payment_limits.distant_terminal_secs = 5;
    })
    .await;
    let first = checkout.request(100).await;
    let tap = checkout.tap(&first);
    let paid = checkout.pay(&first, &tap.0, &tap.1, "first").await;
    assert_eq!(paid["payment"]["flags"], json!([]), "{paid}");
    // Three numbers generated and never submitted: the next one is exactly the window above.
    let second = checkout.request(100).await;
    for _ in 0..3 {
        checkout.tap(&second);
    }
    let tap = checkout.tap(&second);
    let inside = checkout.pay(&second, &tap.0, &tap.1, "inside-window").await;
    assert_eq!(inside["status"], "AUTHORIZED", "{inside}");
    assert_eq!(
        inside["payment"]["flags"],
        json!([]),
        "a jump of the window itself: {inside}"
    );

    // Another shop, once the window since the last payment here has passed (database clock).
    let admin = checkout
        .app
        .token(checkout.app.retailer_id, Role::Admin)
        .await;
    let location = checkout
        .app
        .graphql(Some(&admin), "mutation { createLocation(input: { name: \"Far shop\", kind: SHOP, street: \"s\", city: \"far\", postalCode: \"p\", countryCode: \"DE\" }) { location { id } } }", json!({}))
        .await
        .data("/createLocation/location/id")
        .clone();
    let far_key = SigningKey::from_bytes(&[0x66; 32]);
    let far_device = checkout
        .app
        .graphql(Some(&admin), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
            json!({ "input": { "name": "Far till", "locationId": location, "publicKey": STANDARD.encode(far_key.verifying_key().as_bytes()) } }))
        .await
        .data("/registerDevice/device/id")
        .as_str()
        .expect("id")
        .to_owned();
    let window_ends = api::db::database_now(&checkout.app.hub.state.db)
        .await
        .expect("db time")
        + chrono::Duration::seconds(6);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while api::db::database_now(&checkout.app.hub.state.db)
        .await
        .expect("db time")
        < window_ends
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the database clock did not move"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let far_token = device_token(decode_global_id(&far_device), &far_key);
    let base_url = checkout.app.base_url.clone();
    let order = checkout.new_order(1).await;
    let far_request = checkout.request_at(&order, &far_device, 100).await;
    let tap = checkout.tap(&far_request);
    let after = pay_as(
        &checkout,
        &base_url,
        &far_token,
        &far_request,
        &tap,
        "after-window",
    )
    .await;
    assert_eq!(after["status"], "AUTHORIZED", "{after}");
    assert_eq!(
        after["payment"]["flags"],
        json!([]),
        "outside the window: {after}"
    );
    // Back home at once: inside the window, flagged.
    let home = checkout.request(100).await;
    let tap = checkout.tap(&home);
    let back = checkout.pay(&home, &tap.0, &tap.1, "back-home").await;
    assert_eq!(
        back["payment"]["flags"],
        json!(["DISTANT_TERMINALS"]),
        "{back}"
    );
    checkout.app.stop().await;
}
on_both_backends!(review_flag_bounds, review_flags_respect_their_bounds);

/// A database fault while the number is being used (here a trigger refusing the insert, as a dropped
/// connection or a statement timeout would) is not a decline: the tap answers INTERNAL, nothing is
/// recorded or consumed, and a retry under the same idempotency key, once the fault is gone, pays.
async fn database_faults_are_not_declines(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let mut checkout = Checkout::new(backend).await;
    let db = checkout.app.hub.state.db.clone();
    let (inject, heal) = match backend {
        Backend::Postgres => (
            vec![
                "CREATE FUNCTION injected_fault() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER injected_fault BEFORE INSERT ON number_use FOR EACH ROW EXECUTE FUNCTION injected_fault()",
            ],
            vec![
                "DROP TRIGGER injected_fault ON number_use",
                "DROP FUNCTION injected_fault()",
            ],
        ),
        Backend::Sqlite => (
            vec![
                "CREATE TRIGGER injected_fault BEFORE INSERT ON number_use BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
            ],
            vec!["DROP TRIGGER injected_fault"],
        ),
    };
    let request = checkout.request(500).await;
    let tap = checkout.tap(&request);
    for statement in &inject {
        db.execute_unprepared(statement)
            .await
            .expect("inject the fault");
    }
    let before = checkout.app.fingerprint().await;
    let device = checkout.device_token();
    let variables = json!({ "input": { "requestId": request["id"], "token": tap.0, "cardSignature": tap.1, "idempotencyKey": "faulty" } });
    let response = checkout
        .app
        .graphql(Some(&device), PAY, variables.clone())
        .await;
    response.expect_error("INTERNAL");
    assert!(
        !response.body.to_string().contains("injected fault"),
        "the cause stays in the log: {}",
        response.body
    );
    assert_eq!(
        checkout.app.fingerprint().await,
        before,
        "no evidence, no key, nothing used"
    );
    for statement in &heal {
        db.execute_unprepared(statement)
            .await
            .expect("heal the fault");
    }
    let retried = checkout.app.graphql(Some(&device), PAY, variables).await;
    assert_eq!(
        retried.data("/payWithOneTimeNumber/status"),
        "AUTHORIZED",
        "{}",
        retried.body
    );
    checkout.app.stop().await;
}
on_both_backends!(faults_are_not_declines, database_faults_are_not_declines);

/// Every named unique key is recognised by its own name on each database, and by no other key's:
/// each row below is inserted a second time behind the API's back.
async fn unique_keys_are_recognised_by_name(backend: Backend) {
    use api::db::constraints::{self, UniqueKey};
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let mut checkout = Checkout::new(backend).await;
    let open = checkout.request(500).await;
    let other_order = checkout.new_order(1).await;
    let paid = checkout.request_for(&other_order, 500).await;
    let tap = checkout.tap(&paid);
    authorized(&checkout, &paid, tap, "paid").await;
    let db = checkout.app.hub.state.db.clone();
    let admin = checkout
        .app
        .token(checkout.app.retailer_id, Role::Admin)
        .await;
    checkout
        .app
        .graphql(Some(&admin), "mutation($g: ID!) { grantShare(input: { granteeId: $g, resourceType: PRODUCT, access: READ }) { share { id } } }",
            json!({ "g": encode_global_id("Organization", checkout.bank) }))
        .await
        .data("/grantShare/share/id");
    let keys: [&UniqueKey; 9] = [
        &constraints::ORGANIZATION_NAME,
        &constraints::MEMBER_NAME,
        &constraints::PRODUCT_SKU,
        &constraints::ISSUER_KEY_ID,
        &constraints::CARD_ID,
        &constraints::OPEN_PAYMENT_REQUEST,
        &constraints::NUMBER_USE_HASH,
        &constraints::NUMBER_USE_CARD_SEQUENCE,
        &constraints::SHARE_GRANT,
    ];
    let expect = |err: sea_orm::DbErr, violated: &UniqueKey| {
        for key in keys {
            assert_eq!(
                key.violated_by(&err),
                std::ptr::eq(key, violated),
                "{} for {err}",
                key.postgres
            );
        }
        let conflict = constraints::conflict(&err).map(|e| e.code());
        assert_eq!(conflict.is_some(), violated.conflict.is_some(), "{err}");
    };
    let fresh = Uuid::now_v7;
    let mut org = entities::organization::Entity::find()
        .one(&db)
        .await
        .expect("org")
        .expect("one");
    org.id = fresh();
    let err = org
        .into_active_model()
        .reset_all()
        .insert(&db)
        .await
        .expect_err("duplicate name");
    expect(err, &constraints::ORGANIZATION_NAME);
    let mut member = entities::member::Entity::find()
        .one(&db)
        .await
        .expect("member")
        .expect("one");
    member.id = fresh();
    let err = member
        .into_active_model()
        .reset_all()
        .insert(&db)
        .await
        .expect_err("duplicate member");
    expect(err, &constraints::MEMBER_NAME);
    let mut product = entities::product::Entity::find()
        .one(&db)
        .await
        .expect("product")
        .expect("one");
    product.id = fresh();
    let err = product
        .into_active_model()
        .reset_all()
        .insert(&db)
        .await
        .expect_err("duplicate SKU");
    expect(err, &constraints::PRODUCT_SKU);
    let mut key = entities::issuer_key::Entity::find()
        .one(&db)
        .await
        .expect("key")
        .expect("one");
    key.id = fresh();
    let err = key
        .into_active_model()
        .reset_all()
        .insert(&db)
        .await
        .expect_err("duplicate key id");
    expect(err, &constraints::ISSUER_KEY_ID);
    let card = entities::card::Entity::find()
        .one(&db)
        .await
        .expect("card")
        .expect("one");
    let err = card
        .into_active_model()
        .reset_all()
        .insert(&db)
        .await
        .expect_err("duplicate card");
    expect(err, &constraints::CARD_ID);
    let open_id = decode_global_id(open["id"].as_str().expect("id"));
    let mut request = entities::payment_request::Entity::find_by_id(open_id)
        .one(&db)
        .await
        .expect("request")
        .expect("one");
    request.id = fresh();
    let err = request
        .into_active_model()
        .reset_all()
        .insert(&db)
        .await
        .expect_err("second open request");
    expect(err, &constraints::OPEN_PAYMENT_REQUEST);
    let used = entities::number_use::Entity::find()
        .one(&db)
        .await
        .expect("use")
        .expect("one");
    let mut same_number = used.clone();
    same_number.sequence += 1_000;
    let err = same_number
        .into_active_model()
        .reset_all()
        .insert(&db)
        .await
        .expect_err("same hash");
    expect(err, &constraints::NUMBER_USE_HASH);
    let mut same_sequence = used;
    same_sequence.number_hash = vec![0xAB; 32];
    let err = same_sequence
        .into_active_model()
        .reset_all()
        .insert(&db)
        .await
        .expect_err("same sequence");
    expect(err, &constraints::NUMBER_USE_CARD_SEQUENCE);
    checkout.app.stop().await;
}
on_both_backends!(unique_keys_by_name, unique_keys_are_recognised_by_name);
