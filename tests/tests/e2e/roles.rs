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
