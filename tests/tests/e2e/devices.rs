//! Device tokens: a checkout device signs its own short-lived JWT; every deviation is UNAUTHENTICATED,
//! a revoked device is stopped at its next request, and a device may do nothing but take payments.

use api::auth::Role;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
use hub_tests::{Backend, TestApp, on_both_backends};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

fn sign(key: &SigningKey, kid: Option<String>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid;
    let der = key.to_pkcs8_der().expect("pkcs8");
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).expect("sign")
}

fn claims(device: Uuid, iat: i64, exp: i64) -> Value {
    json!({ "iss": format!("device:{device}"), "sub": device, "aud": "iot-commerce-hub", "iat": iat, "exp": exp, "jti": Uuid::new_v4() })
}

async fn register(app: &TestApp, admin: &str, seed: u8) -> (Uuid, SigningKey) {
    hub_tests::register_device(
        &app.client,
        &app.base_url,
        admin,
        &format!("Till {seed}"),
        seed,
    )
    .await
}

async fn device_tokens_are_checked_on_every_request(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let (device, key) = register(&app, &admin, 9).await;
    let (other_device, other_key) = register(&app, &admin, 10).await;
    let now = chrono::Utc::now().timestamp();
    let valid = sign(
        &key,
        Some(device.to_string()),
        &claims(device, now, now + 120),
    );

    let me = app
        .graphql(
            Some(&valid),
            "{ me { role member { id } device { name status } organization { kind } } }",
            json!({}),
        )
        .await;
    assert_eq!(me.data("/me/role"), "DEVICE");
    assert_eq!(me.data("/me/device/name"), "Till 9");
    assert!(me.data("/me/member").is_null());

    // A device takes payments and does nothing else.
    let before = app.fingerprint().await;
    for query in [
        "{ organizations { totalCount } }",
        "{ products { totalCount } }",
        "{ members { id } }",
        "{ orders { totalCount } }",
        "{ events { edges { cursor } } }",
        "{ customers { totalCount } }",
        "mutation { createLocation(input: { name: \"x\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }",
    ] {
        app.graphql(Some(&valid), query, json!({}))
            .await
            .expect_error("FORBIDDEN");
    }

    let kid = Some(device.to_string());
    let hs256 = {
        let header = Header::new(Algorithm::HS256);
        jsonwebtoken::encode(
            &header,
            &claims(device, now, now + 60),
            &EncodingKey::from_secret(key.verifying_key().as_bytes()),
        )
        .expect("hs256")
    };
    let alg_none = {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            part(&json!({ "alg": "none", "kid": device.to_string() })),
            part(&claims(device, now, now + 60))
        )
    };
    let mut wrong_aud = claims(device, now, now + 60);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims(device, now, now + 60);
    wrong_iss["iss"] = json!(format!("device:{other_device}"));
    let mut wrong_sub = claims(device, now, now + 60);
    wrong_sub["sub"] = json!(other_device);
    let mut no_aud = claims(device, now, now + 60);
    no_aud.as_object_mut().expect("object").remove("aud");
    let cases: Vec<(&str, String)> = vec![
        (
            "lifetime over 300 s",
            sign(&key, kid.clone(), &claims(device, now, now + 301)),
        ),
        (
            "expired",
            sign(&key, kid.clone(), &claims(device, now - 400, now - 100)),
        ),
        (
            "issued in the future",
            sign(&key, kid.clone(), &claims(device, now + 3600, now + 3660)),
        ),
        ("wrong audience", sign(&key, kid.clone(), &wrong_aud)),
        ("no audience", sign(&key, kid.clone(), &no_aud)),
        (
            "issuer names another device",
            sign(&key, kid.clone(), &wrong_iss),
        ),
        (
            "subject names another device",
            sign(&key, kid.clone(), &wrong_sub),
        ),
        ("no kid", sign(&key, None, &claims(device, now, now + 60))),
        (
            "kid of another device",
            sign(
                &key,
                Some(other_device.to_string()),
                &claims(device, now, now + 60),
            ),
        ),
        (
            "signed with another device's key",
            sign(&other_key, kid.clone(), &claims(device, now, now + 60)),
        ),
        (
            "unknown device",
            sign(
                &key,
                Some(Uuid::new_v4().to_string()),
                &claims(device, now, now + 60),
            ),
        ),
        ("HS256 with the device's public key", hs256),
        ("alg none", alg_none),
    ];
    for (case, token) in &cases {
        let response = app.graphql(Some(token), "{ me { role } }", json!({})).await;
        assert_eq!(
            response.error_code(),
            Some("UNAUTHENTICATED"),
            "{case}: {}",
            response.body
        );
    }
    assert_eq!(
        app.fingerprint().await,
        before,
        "refused tokens changed nothing"
    );

    // Revoking the device stops its (still unexpired) token at once.
    let device_id = hub_tests::encode_global_id(hub_tests::RecordKind::Device, device);
    app.graphql(
        Some(&admin),
        "mutation($id: ID!) { revokeDevice(input: { id: $id, version: 1 }) { device { status } } }",
        json!({ "id": device_id }),
    )
    .await
    .data("/revokeDevice");
    app.graphql(Some(&valid), "{ me { role } }", json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    // A member's role cannot be DEVICE.
    app.graphql(Some(&admin), "mutation { createMember(input: { name: \"fake-device\", role: DEVICE }) { member { id } } }", json!({}))
        .await
        .expect_error("VALIDATION");
    app.stop().await;
}
on_both_backends!(device_tokens, device_tokens_are_checked_on_every_request);
