//! Field-level encryption: sensitive values exist only sealed (database dump, SQLite file and WAL,
//! logs); altered ciphertexts are errors with a code, never data; the blind index finds exact matches;
//! a wrong master key stops the hub; an older schema's plaintext is sealed and dropped on upgrade.
//! Rotation under load and a crash during re-encryption are in `encryption_rotation`.

use entities::customer;
use hub_tests::{
    Backend, TestApp,
    checkout::{Checkout, PAY},
    decode_global_id, on_both_backends, on_postgres, post_graphql,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

const CREATE: &str = "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id name email phone address version } } }";
const UPDATE: &str = "mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) { customer { id phone address version } } }";

/// Values no other test writes, so finding one anywhere means it leaked.
struct Markers {
    name: String,
    email: String,
    phone: String,
    address: String,
    updated_address: String,
}

impl Markers {
    fn new() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Self {
            name: format!("Zelda Marker{}", &tag[..12]),
            email: format!("zelda.{}@marker.example", &tag[..12]),
            phone: format!("+31 6 {}", &tag[12..20]),
            address: format!("Markerstraat {}", &tag[20..]),
            updated_address: format!("Nieuweweg {}", &tag[..16]),
        }
    }

    fn all(&self) -> [&str; 5] {
        [
            &self.name,
            &self.email,
            &self.phone,
            &self.address,
            &self.updated_address,
        ]
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// What a payment leaves that must not appear in clear: the number's 16 digits and the whole token.
struct Paid {
    digits: String,
    token: String,
}

/// Creates, replays, updates and searches a customer, pays once with a one-time number and reads the
/// whole token back as its issuer, all through `url` (the in-process hub, or a replica process whose
/// log is read afterwards).
async fn workload(checkout: &mut Checkout, url: &str, markers: &Markers) -> Paid {
    let admin = checkout
        .app
        .token(checkout.app.retailer_id, api::auth::Role::Admin)
        .await;
    let client = checkout.app.client.clone();
    let gql = |query: &'static str, variables: Value| {
        let (admin, client) = (admin.clone(), client.clone());
        async move { post_graphql(&client, url, &admin, query, variables).await }
    };
    let input = json!({ "i": { "name": markers.name, "email": markers.email, "phone": markers.phone,
        "address": markers.address, "idempotencyKey": "marker-create" } });
    let created = gql(CREATE, input.clone()).await;
    let customer = created.data("/createCustomer/customer").clone();
    assert_eq!(
        customer["email"],
        json!(markers.email),
        "the owner reads it back"
    );
    let replayed = gql(CREATE, input).await;
    assert_eq!(
        replayed.data("/createCustomer/customer/id"),
        &customer["id"],
        "an idempotent replay returns the same customer"
    );
    gql(
        UPDATE,
        json!({ "i": { "id": customer["id"], "version": 1, "address": markers.updated_address } }),
    )
    .await
    .data("/updateCustomer/customer/version");
    let found = gql(
        "query($e: String!) { customers(first: 5, filter: { email: $e }) { totalCount edges { node { address } } } }",
        json!({ "e": markers.email.to_uppercase() }),
    )
    .await;
    assert_eq!(found.data("/customers/totalCount"), &json!(1));
    assert_eq!(
        found.data("/customers/edges/0/node/address"),
        &json!(markers.updated_address)
    );

    let request = checkout.request(1_500).await;
    let (token, signature) = checkout.tap(&request);
    let device = checkout.device_token();
    let submit = json!({ "input": { "requestId": request["id"], "token": token,
        "cardSignature": signature, "idempotencyKey": "marker-pay" } });
    let paid = post_graphql(&client, url, &device, PAY, submit.clone()).await;
    let paid = paid.data("/payWithOneTimeNumber").clone();
    assert_eq!(paid["status"], json!("AUTHORIZED"), "{paid}");
    // A byte-identical retry is answered from its (keyed) idempotency record.
    let again = post_graphql(&client, url, &device, PAY, submit).await;
    assert_eq!(
        again.data("/payWithOneTimeNumber/evidenceId"),
        &paid["evidenceId"]
    );
    let decoded = card_protocol::token::Token::from_base64url(&token).expect("token");
    let digits = String::from_utf8(decoded.body.number.digits().to_vec()).expect("digits");

    // The whole token is kept for its issuer, and only for it.
    let evidence = paid["evidenceId"].as_str().expect("evidence id").to_owned();
    let read = post_graphql(
        &client,
        url,
        &checkout.bank_admin,
        "query($e: ID!) { evidenceToken(evidenceId: $e) }",
        json!({ "e": evidence }),
    )
    .await;
    assert_eq!(
        read.data("/evidenceToken"),
        &json!(token),
        "the issuer reads the whole token"
    );
    checkout
        .app
        .graphql(
            Some(&admin),
            "query($e: ID!) { evidenceToken(evidenceId: $e) }",
            json!({ "e": evidence }),
        )
        .await
        .expect_error("FORBIDDEN");
    let other_bank = checkout
        .app
        .create_organization(
            "Other Bank",
            entities::organization::OrganizationKind::FinancialProvider,
        )
        .await;
    let other_admin = checkout.app.token(other_bank, api::auth::Role::Admin).await;
    checkout
        .app
        .graphql(
            Some(&other_admin),
            "query($e: ID!) { evidenceToken(evidenceId: $e) }",
            json!({ "e": evidence }),
        )
        .await
        .expect_error("NOT_FOUND");
    Paid { digits, token }
}

async fn sealed_on_postgres(_backend: Backend) {
    let mut checkout = Checkout::new(Backend::Postgres).await;
    // A replica process at debug level carries the workload, so its whole log can be searched.
    let replica = checkout
        .app
        .spawn_replica_with_env(&[("RUST_LOG".into(), "debug".into())])
        .await;
    let markers = Markers::new();
    let paid = workload(&mut checkout, &replica.url, &markers).await;

    let url = checkout
        .app
        .hub
        .state
        .config
        .database_url
        .clone()
        .expect("postgres");
    let dump = std::process::Command::new("pg_dump")
        .arg("--no-owner")
        .arg(&url)
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(dump.stdout.len() > 10_000, "the dump holds the database");
    let log = std::fs::read(&replica.log).expect("replica log");
    assert!(contains(&log, "DEBUG"), "the replica logged at debug level");
    assert!(
        contains(&log, "whole one-time-number token read by its issuer"),
        "the issuer's read of the token is audited in the log"
    );
    let secrets = markers
        .all()
        .into_iter()
        .chain([paid.digits.as_str(), paid.token.as_str()]);
    for marker in secrets {
        // The dump covers every table: customers, events (the outbox), idempotency records, evidence;
        // binary columns are dumped as hex, so the hex form is searched too.
        let hex: String = marker.bytes().map(|byte| format!("{byte:02x}")).collect();
        assert!(!contains(&dump.stdout, marker), "{marker:?} is in pg_dump");
        assert!(
            !contains(&dump.stdout, &hex),
            "{marker:?} is in pg_dump as hex"
        );
        assert!(!contains(&log, marker), "{marker:?} is in the hub's log");
    }
    drop(replica);
    checkout.app.stop().await;
}
on_postgres!(
    sensitive_values_are_only_sealed_on_postgres,
    sealed_on_postgres
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_values_are_only_sealed_in_the_sqlite_file_and_its_wal() {
    let mut checkout = Checkout::new(Backend::Sqlite).await;
    let markers = Markers::new();
    let url = checkout.app.base_url.clone();
    let paid = workload(&mut checkout, &url, &markers).await;
    let dir = checkout.app.data_dir();
    let mut files = 0;
    for name in ["hub.db", "hub.db-wal", "hub.db-shm"] {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            continue;
        };
        files += 1;
        for marker in markers.all().into_iter().chain([paid.digits.as_str()]) {
            assert!(!contains(&bytes, marker), "{marker:?} is in {name}");
        }
    }
    assert!(files >= 2, "the database and its WAL were searched");
    checkout.app.stop().await;
}

/// Reads one contact field of `id` alone: its value, or the error code.
async fn field(app: &TestApp, token: &str, id: &str, name: &str) -> Result<Value, String> {
    let query = format!("query($id: ID!) {{ node(id: $id) {{ ... on Customer {{ {name} }} }} }}");
    let response = app.graphql(Some(token), &query, json!({ "id": id })).await;
    match response.error_code() {
        Some(code) => {
            assert!(
                response
                    .body
                    .pointer(&format!("/data/node/{name}"))
                    .is_none_or(Value::is_null),
                "no data beside the error: {}",
                response.body
            );
            Err(code.to_owned())
        }
        None => Ok(response.data(&format!("/node/{name}")).clone()),
    }
}

async fn altered_ciphertexts(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, api::auth::Role::Admin).await;
    let mut ids = Vec::new();
    for who in ["ann", "bob"] {
        let created = app
            .graphql(Some(&admin), CREATE, json!({ "i": { "name": format!("{who} name"),
                "email": format!("{who}@example.com"), "phone": format!("{who} phone"), "address": format!("{who} address") } }))
            .await;
        ids.push(
            created
                .data("/createCustomer/customer/id")
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let db = &app.hub.state.db;
    let load = |id: &str| {
        let id = decode_global_id(id);
        async move {
            customer::Entity::find_by_id(id)
                .one(db)
                .await
                .expect("read")
                .expect("row")
        }
    };
    let (ann, bob) = (load(&ids[0]).await, load(&ids[1]).await);
    let write =
        |model: customer::ActiveModel| async move { model.update(db).await.expect("write") };

    // Two rows' emails swapped: neither opens, and neither shows the other's email.
    write(customer::ActiveModel {
        id: Set(ann.id),
        email_sealed: Set(bob.email_sealed.clone()),
        ..Default::default()
    })
    .await;
    write(customer::ActiveModel {
        id: Set(bob.id),
        email_sealed: Set(ann.email_sealed.clone()),
        ..Default::default()
    })
    .await;
    for id in &ids {
        assert_eq!(
            field(&app, &admin, id, "email").await,
            Err("DECRYPTION_FAILED".into())
        );
    }
    // The other fields of the row still open.
    assert_eq!(
        field(&app, &admin, &ids[0], "name").await,
        Ok(json!("ann name"))
    );

    // One column copied into another of the same row.
    write(customer::ActiveModel {
        id: Set(ann.id),
        phone_sealed: Set(Some(ann.name_sealed.clone())),
        ..Default::default()
    })
    .await;
    assert_eq!(
        field(&app, &admin, &ids[0], "phone").await,
        Err("DECRYPTION_FAILED".into())
    );

    // A truncated ciphertext.
    let address = ann.address_sealed.clone().expect("address");
    write(customer::ActiveModel {
        id: Set(ann.id),
        address_sealed: Set(Some(address[..20].to_vec())),
        ..Default::default()
    })
    .await;
    assert_eq!(
        field(&app, &admin, &ids[0], "address").await,
        Err("DECRYPTION_FAILED".into())
    );

    // A key id that does not exist (the hub looks for it in the key table first, then refuses).
    let mut unknown = bob.name_sealed.clone();
    unknown[1..5].copy_from_slice(&4242u32.to_be_bytes());
    write(customer::ActiveModel {
        id: Set(bob.id),
        name_sealed: Set(unknown),
        ..Default::default()
    })
    .await;
    let response = app
        .graphql(
            Some(&admin),
            "query($id: ID!) { node(id: $id) { ... on Customer { name } } }",
            json!({ "id": ids[1] }),
        )
        .await;
    response.expect_error("DECRYPTION_FAILED");
    let message = response
        .body
        .pointer("/errors/0/message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        message.contains("4242") && message.contains("customer.name"),
        "{message}"
    );
    assert!(
        !response.body.to_string().contains("bob name"),
        "{}",
        response.body
    );
    // Untouched fields of that row still open.
    assert_eq!(
        field(&app, &admin, &ids[1], "phone").await,
        Ok(json!("bob phone"))
    );
    app.stop().await;
}
on_both_backends!(altered_ciphertexts_are_errors_not_data, altered_ciphertexts);

async fn blind_index(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, api::auth::Role::Admin).await;
    for (name, email) in [
        ("first", "Ada@Example.com"),
        ("second", "  ada@example.COM"),
        ("other domain", "ada@example.org"),
        ("other person", "bob@example.com"),
        ("prefix", "ada@example.com.evil"),
    ] {
        app.graphql(
            Some(&admin),
            CREATE,
            json!({ "i": { "name": name, "email": email } }),
        )
        .await
        .data("/createCustomer/customer/id");
    }
    let search = |email: &'static str| {
        let admin = admin.clone();
        let app = &app;
        async move {
            let found = app
                .graphql(Some(&admin), "query($e: String!) { customers(first: 10, filter: { email: $e }) { totalCount edges { node { name } } } }", json!({ "e": email }))
                .await;
            let mut names: Vec<String> = found
                .data("/customers/edges")
                .as_array()
                .expect("edges")
                .iter()
                .map(|edge| edge["node"]["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            names.sort();
            assert_eq!(found.data("/customers/totalCount"), &json!(names.len()));
            names
        }
    };
    assert_eq!(search("  ADA@example.COM ").await, ["first", "second"]);
    assert_eq!(search("ada@example.org").await, ["other domain"]);
    assert!(search("nobody@example.com").await.is_empty());
    app.stop().await;
}
on_both_backends!(
    blind_index_finds_exactly_the_matching_customers,
    blind_index
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_stops_the_hub_before_it_serves() {
    let dir = tempfile::tempdir().expect("dir");
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = api::config::HubConfig::with_data_dir(dir.path());
    let hub = api::server::start(config.clone(), any)
        .await
        .expect("first start");
    hub.stop().await.expect("stop");
    // Another master key where the first was.
    let path = config.master_key_path();
    std::fs::remove_file(&path).expect("remove the key");
    api::auth::generate_secret_file(&path).expect("another key");
    let refused = api::server::start(config.clone(), any)
        .await
        .err()
        .expect("a hub with another master key does not start");
    let message = format!("{refused:#}");
    assert!(
        message.contains("is not the one the data keys are wrapped with"),
        "{message}"
    );
    // Refused before anything was added under the wrong key: the table still has its two keys, both
    // wrapped by the first master key.
    let db = sea_orm::Database::connect(config.database_url())
        .await
        .expect("database");
    let keys = entities::encryption_key::Entity::find()
        .all(&db)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 2);
    let first = &keys[0].master_fingerprint;
    assert!(keys.iter().all(|key| &key.master_fingerprint == first));
    let wrong = api::crypto::MasterKey::load(&path).expect("the wrong key");
    assert_ne!(first, &wrong.fingerprint());
    db.close().await.ok();
}

/// An older schema's customers (plaintext columns) are sealed in batches at start, and the plaintext
/// columns are dropped.
async fn legacy_plaintext(backend: Backend) {
    use migration::MigratorTrait;
    use sea_orm::{ConnectionTrait, Statement};
    let markers = Markers::new();
    let dir = tempfile::tempdir().expect("dir");
    let database = match backend {
        Backend::Postgres => Some(hub_tests::TestDatabase::create_empty().await),
        Backend::Sqlite => None,
    };
    let url = match &database {
        Some(database) => database.url().to_owned(),
        None => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("legacy.db").display()
        ),
    };
    const ROWS: usize = 1_203;
    {
        let db = sea_orm::Database::connect(&url).await.expect("connect");
        // The schema as the version before field encryption left it.
        migration::Migrator::up(&db, Some(9))
            .await
            .expect("older migrations");
        let (retailer, _) = api::identity::IdentityService::ensure_retailer(&db, "Retailer")
            .await
            .expect("retailer");
        let backend = db.get_database_backend();
        let p = |n: usize| match backend {
            sea_orm::DbBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        };
        for i in 0..ROWS {
            let (name, email) = if i == 0 {
                (markers.name.clone(), markers.email.clone())
            } else {
                (format!("legacy {i}"), format!("legacy{i}@example.com"))
            };
            db.execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO customer (id, owner_organization_id, name, email, phone, address, \
                     version, created_at, updated_at) VALUES ({}, {}, {}, {}, {}, {}, 1, {}, {})",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6),
                    p(7),
                    p(8)
                ),
                [
                    uuid::Uuid::now_v7().into(),
                    retailer.id.into(),
                    name.into(),
                    email.into(),
                    (i == 0).then(|| markers.phone.clone()).into(),
                    (i == 0).then(|| markers.address.clone()).into(),
                    chrono::Utc::now().into(),
                    chrono::Utc::now().into(),
                ],
            ))
            .await
            .expect("legacy customer");
        }
        db.close().await.expect("close");
    }
    let app = TestApp::start_with(backend, |config| config.database_url = Some(url.clone())).await;
    let admin = app.token(app.retailer_id, api::auth::Role::Admin).await;
    let found = app
        .graphql(Some(&admin), "query($e: String!) { customers(first: 2, filter: { email: $e }) { totalCount edges { node { name email phone address } } } }",
            json!({ "e": markers.email }))
        .await;
    assert_eq!(
        found.data("/customers/edges/0/node"),
        &json!({ "name": markers.name, "email": markers.email, "phone": markers.phone, "address": markers.address })
    );
    let all = app
        .graphql(
            Some(&admin),
            "{ customers(first: 1) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(all.data("/customers/totalCount"), &json!(ROWS));
    let status = app
        .graphql(
            Some(&admin),
            "{ encryptionStatus { tables { table rowsByKey { keyId rows } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        status.data("/encryptionStatus/tables/0"),
        &json!({ "table": "customer", "rowsByKey": [{ "keyId": 1, "rows": ROWS }] }),
        "every row sealed under the first key"
    );
    let db = &app.hub.state.db;
    let columns_sql = match backend {
        Backend::Postgres => {
            "SELECT column_name::text AS name FROM information_schema.columns WHERE table_name = 'customer'"
        }
        Backend::Sqlite => "SELECT name FROM pragma_table_info('customer')",
    };
    let columns: Vec<String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            columns_sql,
        ))
        .await
        .expect("columns")
        .iter()
        .map(|row| row.try_get::<String>("", "name").expect("name"))
        .collect();
    for dropped in ["name", "email", "phone", "address"] {
        assert!(
            !columns.iter().any(|c| c == dropped),
            "{dropped} is gone: {columns:?}"
        );
    }
    match backend {
        Backend::Postgres => {
            let dump = std::process::Command::new("pg_dump")
                .arg(&url)
                .output()
                .expect("pg_dump");
            assert!(dump.status.success());
            for marker in markers.all() {
                let hex: String = marker.bytes().map(|byte| format!("{byte:02x}")).collect();
                assert!(!contains(&dump.stdout, marker), "{marker:?} is in pg_dump");
                assert!(
                    !contains(&dump.stdout, &hex),
                    "{marker:?} is in pg_dump as hex"
                );
            }
        }
        Backend::Sqlite => {
            // The table was rewritten after sealing: the old plaintext is not in the file's free pages.
            for name in ["legacy.db", "legacy.db-wal"] {
                if let Ok(bytes) = std::fs::read(dir.path().join(name)) {
                    for marker in markers.all() {
                        assert!(!contains(&bytes, marker), "{marker:?} is in {name}");
                    }
                }
            }
        }
    }
    app.stop().await;
    if let Some(database) = database {
        database.drop_database().await;
    }
}
on_both_backends!(
    plaintext_of_an_older_schema_is_sealed_and_dropped,
    legacy_plaintext
);

/// The data key every sealed value of `table`'s rows names in its header, with the row's `key_id`.
async fn sealed_keys(
    db: &sea_orm::DatabaseConnection,
    table: &str,
) -> Vec<(uuid::Uuid, i32, Vec<u32>)> {
    use sea_orm::{ConnectionTrait, Statement};
    let sealed = api::crypto::reseal::SEALED_TABLES
        .iter()
        .find(|sealed| sealed.table == table)
        .expect("a sealed table");
    let columns: Vec<&str> = sealed.columns.iter().map(|(_, stored)| *stored).collect();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT id, key_id, {} FROM {table} WHERE key_id IS NOT NULL",
                columns.join(", ")
            ),
        ))
        .await
        .expect("sealed rows");
    rows.iter()
        .map(|row| {
            let id: uuid::Uuid = row.try_get("", "id").expect("id");
            let key_id: i32 = row.try_get("", "key_id").expect("key id");
            let headers = sealed
                .columns
                .iter()
                .filter_map(|(logical, stored)| {
                    let value: Option<Vec<u8>> = row.try_get("", stored).expect("column");
                    let place = api::crypto::FieldPlace {
                        table: sealed.table,
                        column: logical,
                        row: id,
                    };
                    value.map(|value| api::crypto::key_of(place, &value).map_or(0, |key| key.0))
                })
                .collect();
            (id, key_id, headers)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_on_sqlite_moves_customers_and_evidence_and_leaves_an_altered_row_alone() {
    let mut checkout = Checkout::new_with(Backend::Sqlite, 3, |config| {
        config.encryption.key_refresh_ms = 200
    })
    .await;
    let request = checkout.request(1_500).await;
    let (token, signature) = checkout.tap(&request);
    let paid = checkout
        .pay(&request, &token, &signature, "rotate-pay")
        .await;
    assert_eq!(paid["status"], json!("AUTHORIZED"), "{paid}");
    let app = &checkout.app;
    let admin = app.token(app.retailer_id, api::auth::Role::Admin).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let created = app
            .graphql(
                Some(&admin),
                CREATE,
                json!({ "i": { "name": format!("rotated {i}"),
                "email": format!("rotated{i}@example.com"), "phone": format!("{i}") } }),
            )
            .await;
        ids.push(
            created
                .data("/createCustomer/customer/id")
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    // One row altered in the database: it cannot be re-encrypted, and must not stop the others.
    let db = &app.hub.state.db;
    let altered = decode_global_id(&ids[7]);
    let row = customer::Entity::find_by_id(altered)
        .one(db)
        .await
        .expect("read")
        .expect("row");
    let mut broken = row.email_sealed.clone();
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    customer::ActiveModel {
        id: Set(altered),
        email_sealed: Set(broken),
        ..Default::default()
    }
    .update(db)
    .await
    .expect("altered");

    let mut command = std::process::Command::new(hub_tests::hub_binary());
    for (name, _) in std::env::vars() {
        if name == "DATABASE_URL" || name.starts_with("HUB_") {
            command.env_remove(name);
        }
    }
    let output = command
        .env("HUB_DATA_DIR", app.data_dir())
        .env("RUST_LOG", "warn")
        .args(["keys", "rotate-data"])
        .output()
        .expect("hub keys rotate-data");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = app
            .graphql(
                Some(&admin),
                "{ encryptionStatus { primaryKeyId pending tables { table pending } } }",
                json!({}),
            )
            .await;
        let status = status.data("/encryptionStatus");
        if status["primaryKeyId"] == json!(2) && status["pending"] == json!(1) {
            assert_eq!(
                status["tables"][0],
                json!({ "table": "customer", "pending": 1 }),
                "{status}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "re-encryption did not finish: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Every value's own header names the key its row says; only the altered row is still under key 1.
    for (id, key_id, headers) in sealed_keys(db, "customer").await {
        let expected = if id == altered { 1 } else { 2 };
        assert_eq!(key_id, expected, "customer {id}");
        assert!(
            headers.iter().all(|key| *key == expected as u32),
            "customer {id}: {headers:?}"
        );
    }
    let evidence = sealed_keys(db, "payment_evidence").await;
    assert_eq!(evidence.len(), 1, "the payment's evidence is sealed");
    assert_eq!((evidence[0].1, evidence[0].2.as_slice()), (2, &[2u32][..]));
    // Still readable after the move: the issuer's token and the customers' fields.
    let read = app
        .graphql(
            Some(&checkout.bank_admin),
            "query($e: ID!) { evidenceToken(evidenceId: $e) }",
            json!({ "e": paid["evidenceId"] }),
        )
        .await;
    assert_eq!(read.data("/evidenceToken"), &json!(token));
    assert_eq!(
        field(app, &admin, &ids[3], "name").await,
        Ok(json!("rotated 3"))
    );
    assert_eq!(
        field(app, &admin, &ids[7], "email").await,
        Err("DECRYPTION_FAILED".into())
    );
    checkout.app.stop().await;
}
