//! The token attack matrix: every forged, stale or misdirected token is UNAUTHENTICATED and changes nothing.

use api::auth::Role;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use entities::organization::OrganizationKind;
use hub_tests::{Backend, TestApp, on_both_backends};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Signs arbitrary claims with an ed25519 key, as an attacker (or the hub) would.
fn sign_eddsa(claims: &Value, key: &ed25519_dalek::SigningKey) -> String {
    let der = key.to_pkcs8_der().expect("pkcs8");
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .expect("sign")
}

fn unsigned(header: Value, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", part(&header), part(claims))
}

async fn forged_and_stale_tokens_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let supplier = app
        .create_organization("Target Supplier", OrganizationKind::Supplier)
        .await;
    let hub_key = ed25519_dalek::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(app.signing_key_path()).expect("key file"),
    )
    .expect("hub key");
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);

    // A real token of a real admin is the template every forgery starts from.
    let genuine = app.token(supplier, Role::Admin).await;
    let payload = genuine.split('.').nth(1).expect("payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("claims");
    let now = chrono::Utc::now().timestamp();
    let with = |changes: Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let without = |field: &str| {
        let mut c = claims.clone();
        c.as_object_mut().expect("object").remove(field);
        c
    };

    // Control: the genuine token and a re-signed copy of its claims work, so refusals below are about
    // the single thing each case changes.
    let query = "{ me { role } }";
    app.graphql(Some(&genuine), query, json!({}))
        .await
        .data("/me/role");
    app.graphql(Some(&sign_eddsa(&claims, &hub_key)), query, json!({}))
        .await
        .data("/me/role");

    // A member that existed when its token was minted and was removed since.
    let doomed = app.token_for(supplier, "doomed", Role::Member).await;
    let admin = app.token(supplier, Role::Admin).await;
    let members = app
        .graphql(Some(&admin), "{ members { id name } }", json!({}))
        .await;
    let doomed_id = members
        .data("/members")
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["name"] == "doomed")
        .expect("doomed member")["id"]
        .clone();
    app.graphql(
        Some(&admin),
        "mutation($input: RemoveMemberInput!) { removeMember(input: $input) { removedMemberId } }",
        json!({ "input": { "memberId": doomed_id } }),
    )
    .await
    .data("/removeMember");

    let public_pem = hub_key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .expect("pem");
    let hs256 = |secret: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("hs256")
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("not-a-jwt".into())),
        ("three garbage parts", Some("a.b.c".into())),
        (
            "expired",
            Some(sign_eddsa(
                &with(json!({ "exp": now - 3600, "iat": now - 7200, "nbf": now - 7200 })),
                &hub_key,
            )),
        ),
        (
            "expired beyond leeway",
            Some(sign_eddsa(&with(json!({ "exp": now - 45 })), &hub_key)),
        ),
        (
            "not yet valid",
            Some(sign_eddsa(&with(json!({ "nbf": now + 3600 })), &hub_key)),
        ),
        (
            "wrong audience",
            Some(sign_eddsa(
                &with(json!({ "aud": "someone-else" })),
                &hub_key,
            )),
        ),
        (
            "wrong issuer",
            Some(sign_eddsa(
                &with(json!({ "iss": "someone-else" })),
                &hub_key,
            )),
        ),
        ("no aud claim", Some(sign_eddsa(&without("aud"), &hub_key))),
        ("no iss claim", Some(sign_eddsa(&without("iss"), &hub_key))),
        ("no nbf claim", Some(sign_eddsa(&without("nbf"), &hub_key))),
        ("no exp claim", Some(sign_eddsa(&without("exp"), &hub_key))),
        (
            "alg none",
            Some(unsigned(json!({ "alg": "none", "typ": "JWT" }), &claims)),
        ),
        (
            "HS256 with the raw public key",
            Some(hs256(hub_key.verifying_key().as_bytes())),
        ),
        (
            "HS256 with the PEM public key",
            Some(hs256(public_pem.as_bytes())),
        ),
        (
            "signed by another ed25519 key",
            Some(sign_eddsa(&claims, &other_key)),
        ),
        (
            // Signed with the hub's own key: only the check of the member's organization stops it.
            "organization swapped",
            Some(sign_eddsa(
                &with(json!({ "org": app.retailer_id })),
                &hub_key,
            )),
        ),
        (
            "tampered payload",
            Some({
                let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
                parts[1] = URL_SAFE_NO_PAD
                    .encode(with(json!({ "role": "ADMIN", "org": app.retailer_id })).to_string());
                parts.join(".")
            }),
        ),
        ("token of a deleted member", Some(doomed)),
    ];

    let before = app.fingerprint().await;
    for (case, token) in &cases {
        // Read and write attempts alike.
        for operation in [
            query.to_owned(),
            r#"mutation { createMember(input: { name: "intruder", role: ADMIN }) { member { id } } }"#.to_owned(),
        ] {
            let response = app.graphql(token.as_deref(), &operation, json!({})).await;
            assert_eq!(response.error_code(), Some("UNAUTHENTICATED"), "{case}: {}", response.body);
            assert_eq!(response.status, 401, "{case}");
            assert!(response.body["data"].is_null(), "{case}: no data leaks");
        }
    }
    assert_eq!(
        app.fingerprint().await,
        before,
        "no refused token changed the database"
    );
    app.stop().await;
}
on_both_backends!(attack_matrix, forged_and_stale_tokens_are_refused);

async fn a_token_never_grants_more_than_the_member_holds(backend: Backend) {
    let app = TestApp::start(backend).await;
    let supplier = app
        .create_organization("Demoted Inc", OrganizationKind::Supplier)
        .await;
    let hub_key = ed25519_dalek::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(app.signing_key_path()).expect("key file"),
    )
    .expect("hub key");
    // A viewer's genuine token re-signed with role ADMIN (as if minted before a demotion).
    let viewer = app.token(supplier, Role::Viewer).await;
    let payload = viewer.split('.').nth(1).expect("payload");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("claims");
    claims["role"] = json!("ADMIN");
    let inflated = sign_eddsa(&claims, &hub_key);
    let me = app
        .graphql(Some(&inflated), "{ me { role } }", json!({}))
        .await;
    assert_eq!(me.data("/me/role"), "VIEWER");
    app.stop().await;
}
on_both_backends!(
    role_capped_by_member,
    a_token_never_grants_more_than_the_member_holds
);
