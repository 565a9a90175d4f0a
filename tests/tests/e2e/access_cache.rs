//! Each replica serves callers' member and device records from memory; a removal or a revocation made
//! through one replica takes access away there at once and on the others as soon as the bus carries the
//! announcement. The replicas here keep records for a minute, so only the announcement can explain a
//! loss of access within the wait below, and a change written behind the hub's back shows that the
//! other replica's cache really was warm.

use std::time::{Duration, Instant};

use api::auth::Role;
use ed25519_dalek::SigningKey;
use hub_tests::{
    Backend, Replicas, TestApp, checkout::device_token, decode_global_id, on_both_backends,
    on_postgres, post_graphql,
};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

/// Long enough that an entry cannot expire during the test.
const CACHE_MS: &str = "60000";
/// How long the other replica may take to learn of the change before the test fails (the bus
/// typically takes milliseconds; the elapsed time is printed).
const ANNOUNCEMENT_DEADLINE: Duration = Duration::from_secs(5);

const ME: &str = "{ me { role member { name } device { name } } }";

on_both_backends!(a_warm_me_reads_nothing, warm_me);
/// `me` answers from what authentication loaded, and authentication from the cache: no statement at
/// all once warm. With the cache off, authentication's one joined read is all `me` costs.
async fn warm_me(backend: Backend) {
    const WHOAMI: &str = "{ me { role member { name } organization { name kind } } }";
    for (cache_ms, expected) in [(60_000, 0), (0, 1)] {
        let app = TestApp::start_with(backend, |config| config.access_cache_ms = cache_ms).await;
        let member = app.token(app.retailer_id, Role::Member).await;
        app.wait_for_bus().await;
        app.graphql(Some(&member), WHOAMI, json!({}))
            .await
            .data("/me/role");
        // Background work (audit links, key refresh) may run statements during a request: the
        // least of five is the request's own cost.
        let mut least = u64::MAX;
        for _ in 0..5 {
            let before = app.hub.state.db_statements();
            let me = app.graphql(Some(&member), WHOAMI, json!({})).await;
            least = least.min(app.hub.state.db_statements() - before);
            assert_eq!(me.data("/me/organization/kind"), "RETAILER");
            assert_eq!(me.data("/me/member/name"), "test-member");
        }
        assert_eq!(
            least, expected,
            "statements per `me` with a cache of {cache_ms} ms"
        );
        app.stop().await;
    }
}

/// One embedded hub (no bus to echo the change back): the mutation itself drops the cached rows, so the
/// very next request is refused, though the cache would keep them for a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changing_replica_refuses_at_once() {
    let app = TestApp::start_with(Backend::Sqlite, |config| config.access_cache_ms = 60_000).await;
    let client = reqwest::Client::new();
    let url = app.base_url.as_str();
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let leaver = app.token(app.retailer_id, Role::Member).await;
    let (device, key) = register_device(&client, url, &admin).await;
    let till = device_token(device, &key);
    let member = decode_global_id(
        post_graphql(&client, url, &leaver, "{ me { member { id } } }", json!({}))
            .await
            .data("/me/member/id")
            .as_str()
            .expect("id"),
    );
    post_graphql(&client, url, &till, ME, json!({}))
        .await
        .data("/me/device/name");
    let db = &app.hub.state.db;
    for table in ["member", "device"] {
        let id = if table == "member" { member } else { device };
        db.execute_unprepared(&format!(
            "UPDATE {table} SET name = 'renamed' WHERE id = '{id}'"
        ))
        .await
        .expect("rename");
    }
    let cached = post_graphql(&client, url, &leaver, ME, json!({})).await;
    assert_eq!(
        cached.data("/me/member/name"),
        "test-member",
        "served from the cache"
    );
    let cached = post_graphql(&client, url, &till, ME, json!({})).await;
    assert_eq!(
        cached.data("/me/device/name"),
        "Till",
        "served from the cache"
    );

    remove_member(&client, url, &admin, member).await;
    post_graphql(&client, url, &leaver, ME, json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    revoke_device(&client, url, &admin, device).await;
    post_graphql(&client, url, &till, ME, json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    app.stop().await;
}

on_postgres!(
    access_changes_reach_other_replicas_through_redis,
    through_redis
);
async fn through_redis(_backend: Backend) {
    lose_access_everywhere(&[("REDIS_URL", hub_tests::redis_url())]).await;
}

on_postgres!(
    access_changes_reach_other_replicas_through_postgres_notify,
    through_notify
);
async fn through_notify(_backend: Backend) {
    lose_access_everywhere(&[]).await;
}

async fn lose_access_everywhere(extra: &[(&str, String)]) {
    let mut env = vec![("HUB_ACCESS_CACHE_MS".to_owned(), CACHE_MS.to_owned())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let replicas = Replicas::start_with_env(2, &env).await;
    let (a, b) = (&replicas.urls[0], &replicas.urls[1]);
    let client = reqwest::Client::new();
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    let leaver = replicas.token(replicas.retailer_id, Role::Member).await;
    let (device, key) = register_device(&client, a, &admin).await;
    let till = device_token(device, &key);
    for url in [a, b] {
        listening(&client, url).await;
    }

    // Warm both replicas' caches, then change the rows behind the hub's back: a replica that serves the
    // old names is answering from its cache.
    for url in [a, b] {
        post_graphql(&client, url, &leaver, ME, json!({}))
            .await
            .data("/me/member/name");
        post_graphql(&client, url, &till, ME, json!({}))
            .await
            .data("/me/device/name");
    }
    let member = decode_global_id(
        post_graphql(&client, a, &leaver, "{ me { member { id } } }", json!({}))
            .await
            .data("/me/member/id")
            .as_str()
            .expect("id"),
    );
    let db = &replicas.state.db;
    db.execute_unprepared(&format!(
        "UPDATE member SET name = 'renamed' WHERE id = '{member}'"
    ))
    .await
    .expect("rename member");
    db.execute_unprepared(&format!(
        "UPDATE device SET name = 'renamed' WHERE id = '{device}'"
    ))
    .await
    .expect("rename device");
    let cached = post_graphql(&client, b, &leaver, ME, json!({})).await;
    assert_eq!(cached.data("/me/member/name"), "test-member", "B is warm");
    let cached = post_graphql(&client, b, &till, ME, json!({})).await;
    assert_eq!(cached.data("/me/device/name"), "Till", "B is warm");

    // The member is removed through A: A refuses it at once, B as soon as it hears.
    remove_member(&client, a, &admin, member).await;
    post_graphql(&client, a, &leaver, ME, json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    let took = refused_within(&client, b, &leaver).await;
    println!("removed member refused by the other replica after {took:?}");

    // The device is revoked through A (still version 1: the rename above bypassed the hub).
    revoke_device(&client, a, &admin, device).await;
    post_graphql(&client, a, &till, ME, json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    let took = refused_within(&client, b, &till).await;
    println!("revoked device refused by the other replica after {took:?}");

    // Everyone else still gets in everywhere.
    for url in [a, b] {
        post_graphql(&client, url, &admin, ME, json!({}))
            .await
            .data("/me/role");
    }
    replicas.stop().await;
}

/// Waits until the replica listens to the bus: its (re)connection empties the cache.
async fn listening(client: &reqwest::Client, url: &str) {
    let started = Instant::now();
    loop {
        let ready: Value = client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz JSON");
        if ready["listening"] == true {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} never listened to the bus: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `url` with `token` until it answers UNAUTHENTICATED; fails after the deadline.
async fn refused_within(client: &reqwest::Client, url: &str, token: &str) -> Duration {
    let started = Instant::now();
    loop {
        let answer = post_graphql(client, url, token, ME, json!({})).await;
        if answer.error_code() == Some("UNAUTHENTICATED") {
            return started.elapsed();
        }
        assert!(
            answer.body.get("errors").is_none(),
            "only UNAUTHENTICATED may end the wait: {}",
            answer.body
        );
        assert!(
            started.elapsed() < ANNOUNCEMENT_DEADLINE,
            "the other replica still accepts the caller after {ANNOUNCEMENT_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn register_device(
    client: &reqwest::Client,
    url: &str,
    admin: &str,
) -> (uuid::Uuid, SigningKey) {
    hub_tests::register_device(client, url, admin, "Till", 7).await
}

/// Removes `member` through the hub at `url`.
async fn remove_member(client: &reqwest::Client, url: &str, admin: &str, member: uuid::Uuid) {
    let member_gid = hub_tests::encode_global_id(hub_tests::RecordKind::Member, member);
    post_graphql(
        client,
        url,
        admin,
        "mutation($input: RemoveMemberInput!) { removeMember(input: $input) { removedMemberId } }",
        json!({ "input": { "memberId": member_gid } }),
    )
    .await
    .data("/removeMember/removedMemberId");
}

/// Revokes `device` (at version 1) through the hub at `url`.
async fn revoke_device(client: &reqwest::Client, url: &str, admin: &str, device: uuid::Uuid) {
    let device_gid = hub_tests::encode_global_id(hub_tests::RecordKind::Device, device);
    let status = post_graphql(
        client,
        url,
        admin,
        "mutation($id: ID!) { revokeDevice(input: { id: $id, version: 1 }) { device { status } } }",
        json!({ "id": device_gid }),
    )
    .await
    .data("/revokeDevice/device/status")
    .clone();
    assert_eq!(status, "REVOKED");
}
