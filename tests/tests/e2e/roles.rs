//! The role matrix, end to end: each refusal is FORBIDDEN (own organization) or NOT_FOUND (another's),
//! and changes nothing.

use api::auth::Role;
use entities::organization::OrganizationKind;
use hub_tests::{Backend, TestApp, on_both_backends};
use serde_json::json;

const CREATE_MEMBER: &str =
    "mutation($input: CreateMemberInput!) { createMember(input: $input) { member { id } } }";
const REMOVE_MEMBER: &str =
    "mutation($input: RemoveMemberInput!) { removeMember(input: $input) { removedMemberId } }";
const ISSUE_TOKEN: &str =
    "mutation($input: IssueTokenInput!) { issueToken(input: $input) { token } }";
const CREATE_ORGANIZATION: &str = "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }";

async fn roles_are_enforced(backend: Backend) {
    let app = TestApp::start(backend).await;
    let supplier = app
        .create_organization("Role Supplier", OrganizationKind::Supplier)
        .await;
    let other = app
        .create_organization("Other Supplier", OrganizationKind::Supplier)
        .await;
    let supplier_admin = app.token(supplier, Role::Admin).await;
    let supplier_member = app.token(supplier, Role::Member).await;
    let supplier_viewer = app.token(supplier, Role::Viewer).await;
    let retailer_member = app.token(app.retailer_id, Role::Member).await;
    let other_admin = app.token(other, Role::Admin).await;

    let members = app
        .graphql(Some(&supplier_admin), "{ members { id name } }", json!({}))
        .await;
    let member_id = |name: &str| {
        members
            .data("/members")
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["name"] == name)
            .expect(name)["id"]
            .clone()
    };
    let viewer_id = member_id("test-viewer");
    let new_org = json!({ "input": { "name": "Sneaky", "kind": "SUPPLIER", "adminName": "x" } });

    let before = app.fingerprint().await;
    let refusals: Vec<(&str, &String, &str, serde_json::Value, &str)> = vec![
        // A viewer cannot write anything.
        (
            "viewer creates member",
            &supplier_viewer,
            CREATE_MEMBER,
            json!({ "input": { "name": "v", "role": "VIEWER" } }),
            "FORBIDDEN",
        ),
        (
            "viewer removes member",
            &supplier_viewer,
            REMOVE_MEMBER,
            json!({ "input": { "memberId": viewer_id } }),
            "FORBIDDEN",
        ),
        (
            "viewer issues token",
            &supplier_viewer,
            ISSUE_TOKEN,
            json!({ "input": { "memberId": viewer_id } }),
            "FORBIDDEN",
        ),
        (
            "viewer creates organization",
            &supplier_viewer,
            CREATE_ORGANIZATION,
            new_org.clone(),
            "FORBIDDEN",
        ),
        // A member cannot manage members or tokens.
        (
            "member creates member",
            &supplier_member,
            CREATE_MEMBER,
            json!({ "input": { "name": "m", "role": "ADMIN" } }),
            "FORBIDDEN",
        ),
        (
            "member removes member",
            &supplier_member,
            REMOVE_MEMBER,
            json!({ "input": { "memberId": viewer_id } }),
            "FORBIDDEN",
        ),
        (
            "member issues token",
            &supplier_member,
            ISSUE_TOKEN,
            json!({ "input": { "memberId": viewer_id } }),
            "FORBIDDEN",
        ),
        // Only the retailer's ADMIN creates organizations.
        (
            "supplier admin creates organization",
            &supplier_admin,
            CREATE_ORGANIZATION,
            new_org.clone(),
            "FORBIDDEN",
        ),
        (
            "retailer member creates organization",
            &retailer_member,
            CREATE_ORGANIZATION,
            new_org.clone(),
            "FORBIDDEN",
        ),
        // An admin cannot reach into another organization: its members do not exist for it.
        (
            "admin issues token for another organization",
            &other_admin,
            ISSUE_TOKEN,
            json!({ "input": { "memberId": viewer_id } }),
            "NOT_FOUND",
        ),
        (
            "admin removes another organization's member",
            &other_admin,
            REMOVE_MEMBER,
            json!({ "input": { "memberId": viewer_id } }),
            "NOT_FOUND",
        ),
    ];
    for (case, token, query, variables, code) in refusals {
        let response = app.graphql(Some(token), query, variables).await;
        assert_eq!(
            response.error_code(),
            Some(code),
            "{case}: {}",
            response.body
        );
    }
    assert_eq!(
        app.fingerprint().await,
        before,
        "no refused request changed the database"
    );

    // The positive side of the matrix: the retailer's ADMIN creates organizations; an ADMIN issues
    // tokens for its own members; everyone reads the directory.
    let retailer_admin = app.token(app.retailer_id, Role::Admin).await;
    app.graphql(Some(&retailer_admin), CREATE_ORGANIZATION, new_org)
        .await
        .data("/createOrganization");
    app.graphql(
        Some(&supplier_admin),
        ISSUE_TOKEN,
        json!({ "input": { "memberId": viewer_id } }),
    )
    .await
    .data("/issueToken/token");
    for token in [&supplier_viewer, &supplier_member, &other_admin] {
        app.graphql(Some(token), "{ organizations { totalCount } }", json!({}))
            .await
            .data("/organizations");
    }
    // The last ADMIN of an organization stays.
    let other_members = app
        .graphql(Some(&other_admin), "{ members { id role } }", json!({}))
        .await;
    let admins: Vec<_> = other_members
        .data("/members")
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "ADMIN")
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(
        admins.len(),
        2,
        "the organization's first admin and test-admin"
    );
    app.graphql(
        Some(&other_admin),
        REMOVE_MEMBER,
        json!({ "input": { "memberId": admins[0] } }),
    )
    .await
    .data("/removeMember");
    let before_last = app.fingerprint().await;
    let last = app.token(other, Role::Admin).await;
    app.graphql(
        Some(&last),
        REMOVE_MEMBER,
        json!({ "input": { "memberId": admins[1] } }),
    )
    .await
    .expect_error("CONFLICT");
    assert_eq!(app.fingerprint().await, before_last);
    app.stop().await;
}
on_both_backends!(role_matrix, roles_are_enforced);

/// One organization's callers for the derived matrix, and what its actions need.
struct Party {
    kind: OrganizationKind,
    tokens: Vec<(Role, String)>,
    admin: String,
    location: serde_json::Value,
    viewer_id: serde_json::Value,
}

/// Sets up an organization with a location and a member of every role.
async fn party(app: &TestApp, id: uuid::Uuid, kind: OrganizationKind) -> Party {
    let mut tokens = Vec::new();
    for role in [Role::Viewer, Role::Member, Role::Admin] {
        tokens.push((role, app.token(id, role).await));
    }
    let admin = tokens[2].1.clone();
    let location = app
        .graphql(Some(&admin), "mutation { createLocation(input: { name: \"Base\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
        .await
        .data("/createLocation/location/id")
        .clone();
    let members = app
        .graphql(Some(&admin), "{ members { id name } }", json!({}))
        .await;
    let viewer_id = members
        .data("/members")
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["name"] == "test-viewer")
        .expect("viewer")["id"]
        .clone();
    Party {
        kind,
        tokens,
        admin,
        location,
        viewer_id,
    }
}

/// A placed order of the retailer (setup).
async fn placed_order(app: &TestApp, admin: &str, n: usize) -> serde_json::Value {
    let product = app
        .graphql(Some(admin), "mutation($sku: String!) { createProduct(input: { sku: $sku, name: \"p\", priceMinor: 100, currency: \"EUR\" }) { product { id } } }", json!({ "sku": format!("REQ-{n}") }))
        .await
        .data("/createProduct/product/id")
        .clone();
    let order = app
        .graphql(Some(admin), "mutation($p: ID!) { createOrder(input: { lines: [{ productId: $p, quantity: 1 }] }) { order { id } } }", json!({ "p": product }))
        .await
        .data("/createOrder/order/id")
        .clone();
    app.graphql(
        Some(admin),
        "mutation($id: ID!) { placeOrder(input: { id: $id }) { order { id } } }",
        json!({ "id": order }),
    )
    .await
    .data("/placeOrder");
    order
}

/// The operation that exercises `action`, with inputs fresh for attempt `n`. The match is exhaustive:
/// a new action does not compile until it has an operation here.
fn operation(
    action: api::policy::Action,
    party: &Party,
    other: &serde_json::Value,
    terminal: &str,
    order: &serde_json::Value,
    request: &serde_json::Value,
    n: usize,
) -> (String, serde_json::Value) {
    use api::policy::Action;
    use base64::{Engine, engine::general_purpose::STANDARD};
    let key = |seed: usize| {
        let key = ed25519_dalek::SigningKey::from_bytes(&[(seed % 200 + 20) as u8; 32]);
        STANDARD.encode(key.verifying_key().as_bytes())
    };
    let (query, variables) = match action {
        Action::ReadSelf => ("{ me { role } }", json!({})),
        Action::ReadDirectory => ("{ organizations(first: 1) { totalCount } }", json!({})),
        Action::ReadOwnOrganization => ("{ products(first: 1) { totalCount } }", json!({})),
        Action::WriteRecords => (
            "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } } }",
            json!({ "i": { "sku": format!("M-{n}"), "name": "m", "priceMinor": 1, "currency": "EUR" } }),
        ),
        Action::ManageMembers => (
            "mutation($i: CreateMemberInput!) { createMember(input: $i) { member { id } } }",
            json!({ "i": { "name": format!("member-{n}"), "role": "VIEWER" } }),
        ),
        Action::IssueTokens => (
            "mutation($i: IssueTokenInput!) { issueToken(input: $i) { token } }",
            json!({ "i": { "memberId": party.viewer_id } }),
        ),
        Action::CreateOrganization => (
            "mutation($i: CreateOrganizationInput!) { createOrganization(input: $i) { organization { id } } }",
            json!({ "i": { "name": format!("Org {n}"), "kind": "SUPPLIER", "adminName": "a" } }),
        ),
        Action::ManageDevices => (
            "mutation($i: RegisterDeviceInput!) { registerDevice(input: $i) { device { id } } }",
            json!({ "i": { "name": format!("Till {n}"), "locationId": party.location, "publicKey": key(n) } }),
        ),
        Action::ManageShares => (
            "mutation($i: GrantShareInput!) { grantShare(input: $i) { share { id } } }",
            json!({ "i": { "granteeId": other, "resourceType": "LOCATION", "recordId": party.location, "access": "READ", "idempotencyKey": format!("share-{n}") } }),
        ),
        Action::ManageKeys => (
            "mutation($i: RegisterIssuerKeyInput!) { registerIssuerKey(input: $i) { issuerKey { id } } }",
            json!({ "i": { "keyId": n + 1, "publicKey": key(n + 7), "prefix": format!("7{n:05}"), "notAfter": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339() } }),
        ),
        Action::IssueCards => (
            "mutation($i: RegisterCardInput!) { registerCard(input: $i) { card { id } } }",
            json!({ "i": { "cardId": uuid::Uuid::new_v4().to_string(), "publicKey": key(n + 13), "lastFour": "1234" } }),
        ),
        Action::RequestPayment => (
            "mutation($i: RequestPaymentInput!) { requestPayment(input: $i) { paymentRequest { id } } }",
            json!({ "i": { "orderId": order, "terminalId": terminal, "amountMinor": 1, "currency": "EUR" } }),
        ),
        Action::ReadCardData => (
            "query($e: ID!) { evidenceToken(evidenceId: $e) }",
            json!({ "e": uuid::Uuid::new_v4().to_string() }),
        ),
        Action::ReadEncryptionStatus => {
            ("{ encryptionStatus { primaryKeyId pending } }", json!({}))
        }
        Action::ReadAudit => ("{ verifyAudit { intact entriesChecked } }", json!({})),
        // On records that do not exist: an allowed caller passes authorization and is told NOT_FOUND.
        Action::SettlePayments => (
            "mutation($i: VoidPaymentInput!) { voidPayment(input: $i) { payment { id } } }",
            json!({ "i": { "paymentId": hub_tests::encode_global_id(hub_tests::RecordKind::Payment, uuid::Uuid::new_v4()), "idempotencyKey": format!("void-{n}") } }),
        ),
        Action::CloseClearingBatch => (
            "mutation($i: CloseClearingBatchInput!) { closeClearingBatch(input: $i) { batch { id } } }",
            json!({ "i": { "id": hub_tests::encode_global_id(hub_tests::RecordKind::ClearingBatch, uuid::Uuid::new_v4()) } }),
        ),
        Action::ConfirmClearingBatch => (
            "mutation($i: ConfirmClearingBatchInput!) { confirmClearingBatch(input: $i) { batch { id } } }",
            json!({ "i": { "id": hub_tests::encode_global_id(hub_tests::RecordKind::ClearingBatch, uuid::Uuid::new_v4()), "keyId": "1", "signature": STANDARD.encode([7u8; 64]) } }),
        ),
        Action::SubmitPayment => (
            "mutation($i: PayWithOneTimeNumberInput!) { payWithOneTimeNumber(input: $i) { status } }",
            json!({ "i": { "requestId": request, "token": junk_token(), "cardSignature": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 64]), "idempotencyKey": format!("submit-{n}") } }),
        ),
    };
    (query.to_owned(), variables)
}

/// A well-formed token signed by nobody the hub knows: a submission the hub judges (and declines).
fn junk_token() -> String {
    use card_protocol::{
        number::PrefixRange,
        token::{Channel, DomainRestrictions, Token, TokenBody},
    };
    let issuer = ed25519_dalek::SigningKey::from_bytes(&[0x31; 32]);
    let body = TokenBody {
        issuer: card_protocol::IssuerId::from_bytes([0x32; 16]),
        key_id: 1,
        number: PrefixRange::new("400099")
            .expect("prefix")
            .number(1)
            .expect("number"),
        card_id: card_protocol::CardId::from_bytes([0x33; 16]),
        sequence: 1,
        not_after: chrono::Utc::now().timestamp() as u64 + 3_600,
        restrictions: DomainRestrictions {
            max_amount_minor: 100,
            currency: *b"EUR",
            merchant: None,
            channel: Channel::ContactlessPresent,
        },
        card_public_key: ed25519_dalek::SigningKey::from_bytes(&[0x34; 32])
            .verifying_key()
            .to_bytes(),
    };
    Token::sign(body, &issuer).to_base64url()
}

/// Every action of the policy's own list, for every role of a retailer and of a financial provider and
/// for a device, end to end: allowed where the table below (written here, not taken from the policy)
/// says so, FORBIDDEN everywhere else.
async fn every_action_for_every_role(backend: Backend) {
    use api::policy::Action::{self, *};
    let app = TestApp::start(backend).await;
    let bank_id = app
        .create_organization("Matrix Bank", OrganizationKind::FinancialProvider)
        .await;
    let retailer = party(&app, app.retailer_id, OrganizationKind::Retailer).await;
    let bank = party(&app, bank_id, OrganizationKind::FinancialProvider).await;
    // The retailer's terminal and its device.
    let device_key = ed25519_dalek::SigningKey::from_bytes(&[0x51; 32]);
    let terminal = app
        .graphql(Some(&retailer.admin), "mutation($i: RegisterDeviceInput!) { registerDevice(input: $i) { device { id } } }",
            json!({ "i": { "name": "Matrix till", "locationId": retailer.location, "publicKey": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, device_key.verifying_key().as_bytes()) } }))
        .await
        .data("/registerDevice/device/id")
        .as_str()
        .expect("id")
        .to_owned();
    let device = device_token::sign(
        hub_tests::decode_global_id(&terminal),
        &device_key,
        "iot-commerce-hub",
        300,
    )
    .expect("device token");

    // Independently written: what each caller may do.
    let reads = [ReadSelf, ReadDirectory, ReadOwnOrganization];
    let expected = |kind: OrganizationKind, role: Role| -> Vec<Action> {
        let mut allowed = match role {
            Role::Device => vec![ReadSelf, RequestPayment, SubmitPayment],
            Role::Viewer => reads.to_vec(),
            Role::Member => [&reads[..], &[WriteRecords, RequestPayment, SettlePayments]].concat(),
            Role::Admin => [
                &reads[..],
                &[
                    WriteRecords,
                    RequestPayment,
                    ManageMembers,
                    IssueTokens,
                    ManageDevices,
                    ManageShares,
                    ReadAudit,
                    SettlePayments,
                    CloseClearingBatch,
                ],
            ]
            .concat(),
        };
        match (kind, role) {
            (OrganizationKind::Retailer, Role::Admin) => {
                allowed.extend([CreateOrganization, ReadEncryptionStatus])
            }
            (OrganizationKind::FinancialProvider, Role::Admin) => {
                allowed.extend([ManageKeys, IssueCards, ReadCardData, ConfirmClearingBatch])
            }
            (OrganizationKind::FinancialProvider, Role::Member) => allowed.push(IssueCards),
            _ => {}
        }
        allowed
    };
    // Operations on records that do not exist (see `operation`).
    let on_missing_record = [SettlePayments, CloseClearingBatch, ConfirmClearingBatch];

    let mut callers: Vec<(&Party, Role, String)> = Vec::new();
    for party in [&retailer, &bank] {
        for (role, token) in &party.tokens {
            callers.push((party, *role, token.clone()));
        }
    }
    callers.push((&retailer, Role::Device, device.clone()));
    let mut n = 0;
    for &action in Action::ALL {
        for (party, role, token) in &callers {
            n += 1;
            let other = hub_tests::encode_global_id(
                hub_tests::RecordKind::Organization,
                if party.kind == OrganizationKind::Retailer {
                    bank_id
                } else {
                    app.retailer_id
                },
            );
            // A fresh order, and for submissions an open request at the terminal, of the retailer.
            let (order, request) = match action {
                RequestPayment => (placed_order(&app, &retailer.admin, n).await, json!(null)),
                SubmitPayment => {
                    let order = placed_order(&app, &retailer.admin, n).await;
                    let request = app
                        .graphql(Some(&retailer.admin), "mutation($i: RequestPaymentInput!) { requestPayment(input: $i) { paymentRequest { id } } }",
                            json!({ "i": { "orderId": order, "terminalId": terminal, "amountMinor": 1, "currency": "EUR" } }))
                        .await
                        .data("/requestPayment/paymentRequest/id")
                        .clone();
                    (json!(null), request)
                }
                _ => (json!(null), json!(null)),
            };
            let (query, variables) =
                operation(action, party, &json!(other), &terminal, &order, &request, n);
            let response = app.graphql(Some(token), &query, variables).await;
            let allowed = expected(party.kind, *role).contains(&action);
            let case = format!("{:?} {role:?} {action:?}", party.kind);
            if allowed && on_missing_record.contains(&action) {
                assert_eq!(
                    response.error_code(),
                    Some("NOT_FOUND"),
                    "{case}: {}",
                    response.body
                );
            } else if allowed {
                // The retailer's inputs are all valid; a bank member reaches the retailer's order
                // only to find it is not its own.
                if party.kind == OrganizationKind::Retailer {
                    assert!(
                        response.body.get("errors").is_none(),
                        "{case}: {}",
                        response.body
                    );
                } else {
                    assert_ne!(
                        response.error_code(),
                        Some("FORBIDDEN"),
                        "{case}: {}",
                        response.body
                    );
                }
            } else {
                assert_eq!(
                    response.error_code(),
                    Some("FORBIDDEN"),
                    "{case}: {}",
                    response.body
                );
            }
        }
    }
    app.stop().await;
}
on_both_backends!(derived_matrix, every_action_for_every_role);
