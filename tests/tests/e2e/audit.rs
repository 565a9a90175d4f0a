//! The audit trail: one entry per mutation that changed something, chained per organization; the
//! chains verify after concurrent work on two replicas, and every kind of rewriting is detected at
//! the first entry it touched (altered, deleted, reordered, cut off, re-linked without the key,
//! forged).

use std::time::Duration;

use api::audit::chain::{ActorKind, AuditKey, EntryFields};
use api::auth::Role;
use entities::{audit_entry, organization::OrganizationKind};
use hub_tests::{
    AUDIT_KEY_FILE, Backend, Replicas, TestApp, decode_global_id, hub_binary, on_both_backends,
    on_postgres, post_graphql,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;

const VERIFY: &str = "query($checkpoint: String) { verifyAudit(checkpoint: $checkpoint) {
    intact entriesChecked headIndex pending rejected firstBreak { index entryId reason } } }";
const CREATE_PRODUCT: &str =
    "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";

fn product(sku: &str) -> Value {
    json!({ "input": { "sku": sku, "name": sku, "priceMinor": 100, "currency": "EUR" } })
}

/// `verifyAudit` once the linker has caught up (bounded wait).
async fn verified(app: &TestApp, token: &str, checkpoint: Option<&str>) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = app
            .graphql(Some(token), VERIFY, json!({ "checkpoint": checkpoint }))
            .await;
        let outcome = response.data("/verifyAudit").clone();
        if outcome["pending"] == "0" {
            return outcome;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "entries stayed unlinked: {outcome}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn first_break(outcome: &Value) -> (i64, Option<String>, String) {
    let first = &outcome["firstBreak"];
    assert!(!first.is_null(), "expected a break: {outcome}");
    (
        first["index"]
            .as_str()
            .and_then(|i| i.parse().ok())
            .expect("index"),
        first["entryId"].as_str().map(str::to_owned),
        first["reason"].as_str().expect("reason").to_owned(),
    )
}

async fn chain(db: &DatabaseConnection, organization: Uuid) -> Vec<audit_entry::Model> {
    audit_entry::Entity::find()
        .filter(audit_entry::Column::OrganizationId.eq(organization))
        .filter(audit_entry::Column::ChainIndex.gt(0))
        .order_by_asc(audit_entry::Column::ChainIndex)
        .all(db)
        .await
        .expect("chain")
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.expect(sql);
}

async fn restore(db: &DatabaseConnection) {
    exec(db, "DELETE FROM audit_entry").await;
    exec(db, "INSERT INTO audit_entry SELECT * FROM audit_backup").await;
}

async fn set_index(db: &DatabaseConnection, seq: i64, index: i64) {
    audit_entry::Entity::update_many()
        .col_expr(audit_entry::Column::ChainIndex, Expr::value(index))
        .filter(audit_entry::Column::Seq.eq(seq))
        .exec(db)
        .await
        .expect("move entry");
}

async fn trail_detects_rewriting_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let viewer = app.token(app.retailer_id, Role::Viewer).await;
    let supplier = app
        .create_organization("Audited Supplier", OrganizationKind::Supplier)
        .await;
    let supplier_admin = app.token(supplier, Role::Admin).await;

    // Seven changes by the retailer (creating the supplier is one), one by the supplier; refusals
    // and reads append nothing.
    let mut products = Vec::new();
    for n in 0..5 {
        let response = app
            .graphql(Some(&admin), CREATE_PRODUCT, product(&format!("AUD-{n}")))
            .await;
        products.push(response.data("/createProduct/product/id").clone());
    }
    // A document that also holds a query, naming its mutation: audited like any other (reads run
    // without the audit, so the edge must not take the document for a query).
    let update = json!({
        "query": "query Look { me { role } } \
                  mutation Change($id: ID!) { updateProduct(input: { id: $id, version: 1, priceMinor: 250 }) { product { id } } }",
        "operationName": "Change",
        "variables": { "id": products[0] },
    });
    app.post_raw(Some(&admin), update.to_string().into_bytes())
        .await
        .data("/updateProduct");
    app.graphql(Some(&admin), CREATE_PRODUCT, product("AUD-0"))
        .await
        .expect_error("CONFLICT");
    app.graphql(Some(&viewer), CREATE_PRODUCT, product("AUD-9"))
        .await
        .expect_error("FORBIDDEN");
    app.graphql(Some(&supplier_admin), CREATE_PRODUCT, product("SUP-1"))
        .await
        .data("/createProduct");
    app.graphql(Some(&viewer), VERIFY, json!({}))
        .await
        .expect_error("FORBIDDEN");

    let outcome = verified(&app, &admin, None).await;
    assert_eq!(outcome["intact"], true, "{outcome}");
    assert_eq!(outcome["entriesChecked"], "7", "{outcome}");
    let supplier_outcome = verified(&app, &supplier_admin, None).await;
    assert_eq!(
        supplier_outcome["entriesChecked"], "1",
        "{supplier_outcome}"
    );

    // What the entries say: who, which operation, which record, in commit order.
    let db = app.hub.state.db.clone();
    let entries = chain(&db, app.retailer_id).await;
    let operations: Vec<&str> = entries.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        operations,
        [
            "createOrganization",
            "createProduct",
            "createProduct",
            "createProduct",
            "createProduct",
            "createProduct",
            "updateProduct"
        ]
    );
    let updated = &entries[6];
    assert_eq!(updated.record_type.as_deref(), Some("Product"));
    assert_eq!(
        updated.record_id,
        Some(decode_global_id(products[0].as_str().expect("id")))
    );
    assert_eq!(updated.actor_kind, "MEMBER");
    assert_eq!(
        entries[1].record_id,
        Some(decode_global_id(products[0].as_str().expect("id")))
    );
    let checkpoint = app
        .graphql(
            Some(&admin),
            "{ auditCheckpoint { index document } }",
            json!({}),
        )
        .await
        .data("/auditCheckpoint")
        .clone();
    assert_eq!(checkpoint["index"], "7");
    let document = checkpoint["document"]
        .as_str()
        .expect("document")
        .to_owned();
    exec(
        &db,
        "CREATE TABLE audit_backup AS SELECT * FROM audit_entry",
    )
    .await;

    // Altered: the entry's own seal no longer matches.
    audit_entry::Entity::update_many()
        .col_expr(audit_entry::Column::Operation, Expr::value("deleteProduct"))
        .filter(audit_entry::Column::Seq.eq(entries[2].seq))
        .exec(&db)
        .await
        .expect("alter");
    let outcome = verified(&app, &admin, None).await;
    assert_eq!(
        first_break(&outcome),
        (
            3,
            Some(entries[2].id.to_string()),
            "ALTERED_ENTRY".to_owned()
        )
    );
    assert_eq!(outcome["intact"], false);
    restore(&db).await;
    assert_eq!(verified(&app, &admin, None).await["intact"], true);

    // Deleted: the index is missing.
    audit_entry::Entity::delete_many()
        .filter(audit_entry::Column::Seq.eq(entries[3].seq))
        .exec(&db)
        .await
        .expect("delete");
    let outcome = verified(&app, &admin, None).await;
    assert_eq!(first_break(&outcome), (4, None, "MISSING_ENTRY".to_owned()));
    restore(&db).await;

    // Reordered: the second and third entries swap places.
    set_index(&db, entries[1].seq, -1_000).await;
    set_index(&db, entries[2].seq, 2).await;
    set_index(&db, entries[1].seq, 3).await;
    let outcome = verified(&app, &admin, None).await;
    assert_eq!(
        first_break(&outcome),
        (2, Some(entries[2].id.to_string()), "BROKEN_LINK".to_owned())
    );
    restore(&db).await;

    // Cut off: without a checkpoint the shorter chain still verifies; the checkpoint shows the cut.
    audit_entry::Entity::delete_many()
        .filter(audit_entry::Column::OrganizationId.eq(app.retailer_id))
        .filter(audit_entry::Column::ChainIndex.gte(5))
        .exec(&db)
        .await
        .expect("truncate");
    assert_eq!(verified(&app, &admin, None).await["intact"], true);
    let outcome = verified(&app, &admin, Some(&document)).await;
    assert_eq!(first_break(&outcome), (5, None, "TRUNCATED".to_owned()));
    restore(&db).await;
    assert_eq!(
        verified(&app, &admin, Some(&document)).await["intact"],
        true
    );
    // A checkpoint edited to say more, or one of another organization, is refused as such.
    let mut forged: Value = serde_json::from_str(&document).expect("json");
    forged["index"] = json!(99);
    let outcome = verified(&app, &admin, Some(&forged.to_string())).await;
    assert_eq!(first_break(&outcome).2, "INVALID_CHECKPOINT");
    let outcome = verified(&app, &supplier_admin, Some(&document)).await;
    assert_eq!(first_break(&outcome).2, "INVALID_CHECKPOINT");
    app.graphql(Some(&admin), VERIFY, json!({ "checkpoint": "{}" }))
        .await
        .expect_error("VALIDATION");

    // Altered, then every later seal and link recomputed without the audit key: the first altered
    // entry is still the one named.
    let guess = AuditKey::from_bytes([7; 32]);
    let link_of = |entry: &audit_entry::Model| -> [u8; 32] {
        entry
            .link
            .clone()
            .expect("link")
            .try_into()
            .expect("32 bytes")
    };
    let mut previous = link_of(&entries[1]);
    for (i, entry) in entries.iter().enumerate().skip(2) {
        let operation = if i == 2 {
            "deleteProduct"
        } else {
            entry.operation.as_str()
        };
        let fields = EntryFields {
            id: entry.id,
            organization: entry.organization_id,
            actor_kind: ActorKind::parse(&entry.actor_kind).expect("kind"),
            actor: entry.actor_id,
            operation,
            record_type: entry.record_type.as_deref(),
            record_id: entry.record_id,
            change_digest: &entry.change_digest,
            recorded_at_micros: entry.recorded_at.timestamp_micros(),
        };
        let seal = guess.seal(&fields);
        let link = guess.link(entry.organization_id, i as i64 + 1, &previous, &seal);
        audit_entry::Entity::update_many()
            .col_expr(audit_entry::Column::Operation, Expr::value(operation))
            .col_expr(audit_entry::Column::Seal, Expr::value(seal.to_vec()))
            .col_expr(audit_entry::Column::Link, Expr::value(link.to_vec()))
            .filter(audit_entry::Column::Seq.eq(entry.seq))
            .exec(&db)
            .await
            .expect("re-link");
        previous = link;
    }
    let outcome = verified(&app, &admin, None).await;
    assert_eq!(
        first_break(&outcome),
        (
            3,
            Some(entries[2].id.to_string()),
            "ALTERED_ENTRY".to_owned()
        )
    );
    restore(&db).await;

    // Deleted, the later entries moved up and re-linked without the key (their seals untouched):
    // the first moved entry's link is the one that fails.
    audit_entry::Entity::delete_many()
        .filter(audit_entry::Column::Seq.eq(entries[2].seq))
        .exec(&db)
        .await
        .expect("delete");
    let mut previous = link_of(&entries[1]);
    for (i, entry) in entries.iter().enumerate().skip(3) {
        let index = i as i64; // one place up
        let link = guess.link(entry.organization_id, index, &previous, &entry.seal);
        audit_entry::Entity::update_many()
            .col_expr(audit_entry::Column::ChainIndex, Expr::value(index))
            .col_expr(audit_entry::Column::Link, Expr::value(link.to_vec()))
            .filter(audit_entry::Column::Seq.eq(entry.seq))
            .exec(&db)
            .await
            .expect("move up");
        previous = link;
    }
    let outcome = verified(&app, &admin, None).await;
    assert_eq!(
        first_break(&outcome),
        (3, Some(entries[3].id.to_string()), "BROKEN_LINK".to_owned())
    );
    restore(&db).await;

    // Deleted, and every later entry un-linked so the linker would rebuild the chain around the
    // gap: the running linker sees the head go back and extends nothing, and the checkpoint shows
    // the chain no longer reaches it.
    audit_entry::Entity::delete_many()
        .filter(audit_entry::Column::Seq.eq(entries[3].seq))
        .exec(&db)
        .await
        .expect("delete");
    audit_entry::Entity::update_many()
        .col_expr(
            audit_entry::Column::ChainIndex,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(
            audit_entry::Column::Link,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .filter(audit_entry::Column::OrganizationId.eq(app.retailer_id))
        .filter(audit_entry::Column::ChainIndex.gt(4))
        .exec(&db)
        .await
        .expect("un-link");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let outcome = app
        .graphql(Some(&admin), VERIFY, json!({ "checkpoint": document }))
        .await
        .data("/verifyAudit")
        .clone();
    assert_eq!(
        outcome["headIndex"], "3",
        "nothing was re-linked: {outcome}"
    );
    assert_eq!(outcome["pending"], "3", "{outcome}");
    assert_eq!(first_break(&outcome), (4, None, "TRUNCATED".to_owned()));
    restore(&db).await;

    // A row inserted without the key is never linked, and verification reports it.
    let before = chain(&db, app.retailer_id).await.len();
    let forged_row = &entries[0];
    exec(
        &db,
        &format!(
            "INSERT INTO audit_entry (id, organization_id, actor_kind, actor_id, operation, record_type, \
             record_id, change_digest, recorded_at, seal, chain_index, link) \
             SELECT {}, organization_id, actor_kind, actor_id, 'createOrganization', record_type, record_id, \
             change_digest, recorded_at, seal, NULL, NULL FROM audit_entry WHERE seq = {}",
            uuid_literal(&app, Uuid::now_v7()),
            forged_row.seq
        ),
    )
    .await;
    let outcome = verified(&app, &admin, None).await;
    assert_eq!(outcome["rejected"], "1", "{outcome}");
    assert_eq!(outcome["intact"], false);
    assert_eq!(
        chain(&db, app.retailer_id).await.len(),
        before,
        "the forged row joined no chain"
    );
    restore(&db).await;

    // A retry answered from its idempotency record appends nothing; a mutation that writes no row
    // (minting a token) is audited all the same.
    let keyed = json!({ "input": { "sku": "AUD-K", "name": "k", "priceMinor": 1, "currency": "EUR",
        "idempotencyKey": "audit-k" } });
    for _ in 0..2 {
        app.graphql(Some(&admin), CREATE_PRODUCT, keyed.clone())
            .await
            .data("/createProduct");
    }
    let member = app
        .graphql(
            Some(&admin),
            "mutation { createMember(input: { name: \"audited\", role: VIEWER }) { member { id } } }",
            json!({}),
        )
        .await
        .data("/createMember/member/id")
        .clone();
    app.graphql(
        Some(&admin),
        "mutation($m: ID!) { issueToken(input: { memberId: $m }) { token } }",
        json!({ "m": member }),
    )
    .await
    .data("/issueToken");
    let outcome = verified(&app, &admin, None).await;
    assert_eq!(outcome["intact"], true, "{outcome}");
    let operations: Vec<String> = chain(&db, app.retailer_id)
        .await
        .into_iter()
        .skip(entries.len())
        .map(|entry| entry.operation)
        .collect();
    assert_eq!(operations, ["createProduct", "createMember", "issueToken"]);
    app.stop().await;
}
on_both_backends!(trail_detects_rewriting, trail_detects_rewriting_flow);

/// A UUID as the backend stores it, for a raw statement.
fn uuid_literal(app: &TestApp, id: Uuid) -> String {
    match app.backend {
        Backend::Postgres => format!("'{id}'::uuid"),
        Backend::Sqlite => format!("X'{}'", id.simple()),
    }
}

/// Two replicas take concurrent writes of two organizations; every chain then verifies, through the
/// API and through `hub audit verify`, and holds exactly one entry per successful mutation.
async fn chains_verify_after_concurrent_work_flow(_backend: Backend) {
    let replicas = Replicas::start(2).await;
    let client = reqwest::Client::new();
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    let created = post_graphql(
        &client,
        &replicas.urls[0],
        &admin,
        "mutation { createOrganization(input: { name: \"Chain Supplier\", kind: SUPPLIER, adminName: \"a\" }) { organization { id } } }",
        json!({}),
    )
    .await;
    let supplier = decode_global_id(
        created
            .data("/createOrganization/organization/id")
            .as_str()
            .expect("id"),
    );
    let supplier_admin = replicas.token(supplier, Role::Admin).await;
    let mut writers = Vec::new();
    for writer in 0..8usize {
        let client = client.clone();
        let url = replicas.urls[writer % 2].clone();
        let token = if writer % 4 < 2 {
            admin.clone()
        } else {
            supplier_admin.clone()
        };
        writers.push(tokio::spawn(async move {
            let mut succeeded = 0usize;
            for n in 0..15 {
                // Every fifth repeats a SKU of the same organization: refused, so not audited.
                let sku = if n % 5 == 4 {
                    format!("W{writer}-{}", n - 1)
                } else {
                    format!("W{writer}-{n}")
                };
                let response =
                    post_graphql(&client, &url, &token, CREATE_PRODUCT, product(&sku)).await;
                match response.error_code() {
                    None => succeeded += 1,
                    Some("CONFLICT") => {}
                    Some(other) => panic!("unexpected {other}: {response:?}"),
                }
            }
            (writer % 4 < 2, succeeded)
        }));
    }
    let (mut retailer_changes, mut supplier_changes) = (1u64, 0u64); // createOrganization above
    for writer in writers {
        let (retailer, succeeded) = writer.await.expect("writer");
        if retailer {
            retailer_changes += succeeded as u64;
        } else {
            supplier_changes += succeeded as u64;
        }
    }
    assert_eq!(retailer_changes, 1 + 4 * 12);
    assert_eq!(supplier_changes, 4 * 12);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (token, expected) in [
        (&admin, retailer_changes),
        (&supplier_admin, supplier_changes),
    ] {
        loop {
            let outcome = post_graphql(&client, &replicas.urls[1], token, VERIFY, json!({}))
                .await
                .data("/verifyAudit")
                .clone();
            if outcome["pending"] == "0" {
                assert_eq!(outcome["intact"], true, "{outcome}");
                assert_eq!(outcome["entriesChecked"], expected.to_string(), "{outcome}");
                assert_eq!(outcome["headIndex"], expected.to_string(), "{outcome}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "unlinked: {outcome}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The operator's tools agree, and a checkpoint they export verifies.
    let checkpoints = replicas.dir().join("checkpoints.jsonl");
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(hub_binary());
        for (name, _) in std::env::vars() {
            if name == "DATABASE_URL" || name.starts_with("HUB_") {
                command.env_remove(name);
            }
        }
        command
            .env("DATABASE_URL", replicas.database_url())
            .env("HUB_AUDIT_KEY_FILE", replicas.dir().join(AUDIT_KEY_FILE))
            .env(
                "HUB_SIGNING_KEY_FILE",
                replicas.dir().join("signing-key.pem"),
            )
            .env("RUST_LOG", "warn")
            .arg("audit")
            .args(args)
            .output()
            .expect("hub audit runs")
    };
    let exported = cli(&["checkpoint", "--out", checkpoints.to_str().expect("path")]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let lines = std::fs::read_to_string(&checkpoints).expect("checkpoints");
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let verified = cli(&[
        "verify",
        "--checkpoint",
        checkpoints.to_str().expect("path"),
    ]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(stdout.matches("intact").count(), 2, "{stdout}");
    assert!(stdout.contains(&format!("{} entries", 4 * 12)), "{stdout}");

    // Cutting the supplier's chain short is caught against the exported checkpoint, and the tool
    // says so with a failing status.
    let db = &replicas.state.db;
    audit_entry::Entity::delete_many()
        .filter(audit_entry::Column::OrganizationId.eq(supplier))
        .filter(audit_entry::Column::ChainIndex.gte(40))
        .exec(db)
        .await
        .expect("truncate");
    let refused = cli(&[
        "verify",
        "--checkpoint",
        checkpoints.to_str().expect("path"),
    ]);
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{stdout}");
    assert!(
        stdout.contains("BROKEN at index 40") && stdout.contains("Truncated"),
        "{stdout}"
    );
    // Deleting a whole chain does not make it disappear from the verification: the checkpoint
    // still names it.
    audit_entry::Entity::delete_many()
        .filter(audit_entry::Column::OrganizationId.eq(supplier))
        .exec(db)
        .await
        .expect("wipe");
    let refused = cli(&[
        "verify",
        "--checkpoint",
        checkpoints.to_str().expect("path"),
    ]);
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{supplier}: BROKEN at index 1")),
        "{stdout}"
    );
    replicas.stop().await;
}
on_postgres!(
    audit_chains_verify_after_concurrent_work_on_two_replicas,
    chains_verify_after_concurrent_work_flow
);
