//! Review flags: raised where they should be, and not at their bounds.

use super::*;
use api::auth::Role;
use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::SigningKey;
use hub_tests::{
    Backend,
    checkout::{Checkout, REQUEST, device_token},
    decode_global_id, on_both_backends,
};
use serde_json::json;

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
