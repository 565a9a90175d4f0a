//! Guard rails and the operational endpoints.

use api::auth::Role;
use hub_tests::{Backend, TestApp, on_both_backends};
use serde_json::json;

async fn oversized_deep_and_complex_requests_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let before = app.fingerprint().await;

    // Larger than the 256 KiB default, though otherwise a valid mutation.
    let padding = "x".repeat(300 * 1024);
    let body = json!({
        "query": "mutation($input: CreateMemberInput!) { createMember(input: $input) { member { id } } }",
        "variables": { "input": { "name": padding, "role": "VIEWER" } }
    });
    let response = app
        .post_raw(Some(&admin), body.to_string().into_bytes())
        .await;
    response.expect_error("PAYLOAD_TOO_LARGE");
    assert_eq!(response.status, 413);

    // Deeper than 12 levels (introspection types nest without end).
    let mut deep = String::from("name");
    for _ in 0..14 {
        deep = format!("ofType {{ {deep} }}");
    }
    let deep = format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}");
    app.graphql(Some(&admin), &deep, json!({}))
        .await
        .expect_error("QUERY_TOO_DEEP");

    // More complex than 2000: many aliased fields in one flat selection (1100 x 2 fields).
    let wide: String = (0..1100).map(|i| format!("a{i}: me {{ role }} ")).collect();
    let response = app
        .graphql(Some(&admin), &format!("{{ {wide} }}"), json!({}))
        .await;
    assert_eq!(
        response.error_code(),
        Some("QUERY_TOO_COMPLEX"),
        "wide query was not refused"
    );

    // Malformed bodies and documents.
    let response = app.post_raw(Some(&admin), b"{ not json".to_vec()).await;
    response.expect_error("BAD_REQUEST");
    assert_eq!(response.status, 400);
    app.graphql(Some(&admin), "{ me { ", json!({}))
        .await
        .expect_error("GRAPHQL_PARSE_FAILED");
    app.graphql(Some(&admin), "{ noSuchField }", json!({}))
        .await
        .expect_error("GRAPHQL_VALIDATION_FAILED");

    // GET serves queries but never mutations.
    let get = |query: &str| {
        app.client
            .get(format!("{}/graphql", app.base_url))
            .query(&[("query", query)])
            .bearer_auth(&admin)
            .send()
    };
    let mutation = get(
        r#"mutation { createMember(input: { name: "via-get", role: VIEWER }) { member { id } } }"#,
    )
    .await
    .expect("GET");
    assert_eq!(mutation.status(), 400);
    let body: serde_json::Value = mutation.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    let query = get("{ me { role } }").await.expect("GET");
    let body: serde_json::Value = query.json().await.expect("json");
    assert_eq!(body["data"]["me"]["role"], "ADMIN", "{body}");

    assert_eq!(
        app.fingerprint().await,
        before,
        "no refused request changed the database"
    );
    app.stop().await;
}
on_both_backends!(guard_rails, oversized_deep_and_complex_requests_are_refused);

async fn health_readiness_metrics_and_request_ids(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.metrics_token = Some("scrape-token-0123456789".into())
    })
    .await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    assert_eq!(app.get("/healthz").await.text().await.expect("body"), "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(ready["database"], true);

    let response = app
        .client
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&admin)
        .header("x-request-id", "test-request-42")
        .json(&json!({ "query": "query WhoAmI { me { role } }", "operationName": "WhoAmI" }))
        .send()
        .await
        .expect("post");
    assert_eq!(
        response.headers()["x-request-id"],
        "test-request-42",
        "request id echoed"
    );
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .bearer_auth("scrape-token-0123456789")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics");
    // Counted under the root field, whatever the client named its operation.
    assert!(
        metrics.contains(r#"hub_graphql_requests_total{operation="query.me",outcome="ok"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("hub_graphql_request_duration_seconds_bucket{operation=\"query.me\""));
    assert!(!metrics.contains("WhoAmI"));

    // GraphiQL is served at the root.
    let page = app.get("/").await.text().await.expect("page");
    assert!(page.contains("graphiql"), "GraphiQL page");
    app.stop().await;
}
on_both_backends!(
    operational_endpoints,
    health_readiness_metrics_and_request_ids
);

async fn readiness_covers_redis_when_configured(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.redis_url = Some(hub_tests::redis_url())
    })
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(ready["redis"], true, "{ready}");
    assert_eq!(ready["database"], true, "{ready}");
    app.stop().await;
}
hub_tests::on_postgres!(readiness_with_redis, readiness_covers_redis_when_configured);

/// A request stuck behind a database lock is cut off at the configured deadline with TIMEOUT.
async fn stuck_requests_time_out(backend: Backend) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = TestApp::start_with(backend, |config| config.limits.request_timeout_secs = 1).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let blocker = app.hub.state.db.begin().await.expect("transaction");
    blocker
        .execute_unprepared("LOCK TABLE member IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let response = app
        .graphql(Some(&admin), "{ me { role } }", json!({}))
        .await;
    response.expect_error("TIMEOUT");
    assert_eq!(response.status, 504);
    blocker.rollback().await.expect("release");
    app.graphql(Some(&admin), "{ me { role } }", json!({}))
        .await
        .data("/me/role");
    app.stop().await;
}
hub_tests::on_postgres!(request_timeout, stuck_requests_time_out);
