//! The number-hash key ring and the unique keys the database holds.

use super::*;
use api::auth::Role;
use hub_tests::{
    Backend, RecordKind,
    checkout::{Checkout, replay_for},
    decode_global_id, encode_global_id, on_both_backends, on_postgres,
};
use sea_orm::EntityTrait;
use serde_json::json;
use uuid::Uuid;

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
            json!({ "g": encode_global_id(RecordKind::Organization, checkout.bank) }))
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
