//! The organization directory, members and token issuance, end to end.

use api::auth::Role;
use entities::organization::OrganizationKind;
use hub_tests::{Backend, TestApp, on_both_backends};
use serde_json::json;

const DIRECTORY: &str = "query($first: Int, $after: String) {
  organizations(first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id name kind } }
  }
}";

async fn directory_pages_through_every_organization(backend: Backend) {
    let app = TestApp::start(backend).await;
    for i in 0..7 {
        app.create_organization(&format!("Supplier {i:02}"), OrganizationKind::Supplier)
            .await;
    }
    app.create_organization("Carrier", OrganizationKind::Logistics)
        .await;
    // Any member of any organization reads the directory, a viewer included.
    let supplier = app
        .create_organization("Viewer Org", OrganizationKind::ServiceProvider)
        .await;
    let viewer = app.token(supplier, Role::Viewer).await;

    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = app
            .graphql(
                Some(&viewer),
                DIRECTORY,
                json!({ "first": 3, "after": after }),
            )
            .await;
        let connection = page.data("/organizations");
        assert_eq!(connection["totalCount"], 10, "retailer + 9 partners");
        for edge in connection["edges"].as_array().expect("edges") {
            names.push(edge["node"]["name"].as_str().expect("name").to_owned());
        }
        if !connection["pageInfo"]["hasNextPage"]
            .as_bool()
            .expect("hasNextPage")
        {
            break;
        }
        after = connection["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "ordered by name, each exactly once");
    assert_eq!(names.len(), 10);
    assert!(names.contains(&"Retailer".to_owned()));

    let carrier = app
        .graphql(Some(&viewer), DIRECTORY, json!({ "first": 100 }))
        .await
        .data("/organizations/edges")
        .as_array()
        .expect("edges")
        .iter()
        .find(|edge| edge["node"]["name"] == "Carrier")
        .expect("carrier listed")["node"]
        .clone();
    assert_eq!(carrier["kind"], "LOGISTICS");
    let one = app
        .graphql(
            Some(&viewer),
            "query($id: ID!) { organization(id: $id) { name kind } }",
            json!({ "id": carrier["id"] }),
        )
        .await;
    assert_eq!(one.data("/organization/name"), "Carrier");
    app.stop().await;
}
on_both_backends!(directory_pages, directory_pages_through_every_organization);

async fn admins_manage_members_and_tokens(backend: Backend) {
    let app = TestApp::start(backend).await;
    let supplier = app
        .create_organization("Acme Supplies", OrganizationKind::Supplier)
        .await;
    let admin = app.token(supplier, Role::Admin).await;

    let created = app
        .graphql(
            Some(&admin),
            "mutation($input: CreateMemberInput!) { createMember(input: $input) { member { id name role } } }",
            json!({ "input": { "name": "erp-system", "role": "MEMBER" } }),
        )
        .await;
    let member_id = created.data("/createMember/member/id").clone();
    assert_eq!(created.data("/createMember/member/role"), "MEMBER");

    let issued = app
        .graphql(
            Some(&admin),
            "mutation($input: IssueTokenInput!) { issueToken(input: $input) { token tokenId expiresAt member { name } } }",
            json!({ "input": { "memberId": member_id, "ttlSeconds": 600 } }),
        )
        .await;
    let token = issued
        .data("/issueToken/token")
        .as_str()
        .expect("token")
        .to_owned();

    let me = app
        .graphql(
            Some(&token),
            "{ me { role member { name } organization { name kind } } }",
            json!({}),
        )
        .await;
    assert_eq!(me.data("/me/role"), "MEMBER");
    assert_eq!(me.data("/me/member/name"), "erp-system");
    assert_eq!(me.data("/me/organization/name"), "Acme Supplies");

    let members = app
        .graphql(Some(&token), "{ members { name role } }", json!({}))
        .await;
    let names: Vec<&str> = members
        .data("/members")
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(
        names.contains(&"erp-system") && names.contains(&"admin"),
        "{names:?}"
    );

    // A duplicate name is a conflict and changes nothing.
    let before = app.fingerprint().await;
    app.graphql(
        Some(&admin),
        "mutation($input: CreateMemberInput!) { createMember(input: $input) { member { id } } }",
        json!({ "input": { "name": "erp-system", "role": "VIEWER" } }),
    )
    .await
    .expect_error("CONFLICT");
    // Bad input: empty names, out-of-range lifetimes.
    app.graphql(
        Some(&admin),
        "mutation($input: CreateMemberInput!) { createMember(input: $input) { member { id } } }",
        json!({ "input": { "name": "   ", "role": "VIEWER" } }),
    )
    .await
    .expect_error("VALIDATION");
    app.graphql(
        Some(&admin),
        "mutation($input: IssueTokenInput!) { issueToken(input: $input) { token } }",
        json!({ "input": { "memberId": member_id, "ttlSeconds": 0 } }),
    )
    .await
    .expect_error("VALIDATION");
    assert_eq!(app.fingerprint().await, before);

    // Removing the member ends its token at once.
    app.graphql(
        Some(&admin),
        "mutation($input: RemoveMemberInput!) { removeMember(input: $input) { removedMemberId } }",
        json!({ "input": { "memberId": member_id } }),
    )
    .await
    .data("/removeMember/removedMemberId");
    app.graphql(Some(&token), "{ me { role } }", json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    app.stop().await;
}
on_both_backends!(member_management, admins_manage_members_and_tokens);

async fn organization_names_are_unique_and_validated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    app.create_organization("Beta Logistics", OrganizationKind::Logistics)
        .await;
    let before = app.fingerprint().await;
    let create = "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }";
    for (input, code) in [
        (
            json!({ "name": "Beta Logistics", "kind": "SUPPLIER", "adminName": "a" }),
            "CONFLICT",
        ),
        (
            json!({ "name": "", "kind": "SUPPLIER", "adminName": "a" }),
            "VALIDATION",
        ),
        (
            json!({ "name": "x".repeat(201), "kind": "SUPPLIER", "adminName": "a" }),
            "VALIDATION",
        ),
        (
            json!({ "name": "Second Retailer", "kind": "RETAILER", "adminName": "a" }),
            "VALIDATION",
        ),
        (
            json!({ "name": "Nameless", "kind": "SUPPLIER", "adminName": " " }),
            "VALIDATION",
        ),
        (
            json!({ "name": "Odd", "kind": "PIRATE", "adminName": "a" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ] {
        app.graphql(Some(&admin), create, json!({ "input": input }))
            .await
            .expect_error(code);
    }
    // A global ID of the wrong type is a validation error; an unknown one is NOT_FOUND.
    let member_shaped = hub_tests::encode_global_id(hub_tests::RecordKind::Member, app.retailer_id);
    app.graphql(
        Some(&admin),
        "query($id: ID!) { organization(id: $id) { name } }",
        json!({ "id": member_shaped }),
    )
    .await
    .expect_error("VALIDATION");
    let unknown =
        hub_tests::encode_global_id(hub_tests::RecordKind::Organization, uuid::Uuid::new_v4());
    app.graphql(
        Some(&admin),
        "query($id: ID!) { organization(id: $id) { name } }",
        json!({ "id": unknown }),
    )
    .await
    .expect_error("NOT_FOUND");
    assert_eq!(
        app.fingerprint().await,
        before,
        "refused requests changed nothing"
    );
    app.stop().await;
}
on_both_backends!(
    organization_validation,
    organization_names_are_unique_and_validated
);
