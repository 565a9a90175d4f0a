//! Key rotation while the hub serves: two replicas on PostgreSQL, 20,000 customers, clients reading and
//! writing throughout; and a replica killed with `kill -9` in the middle of re-encryption.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use api::{
    auth::Role,
    master_data::sensitive::{self, CustomerContact},
};
use entities::customer;
use hub_tests::{Replicas, hub_binary, post_graphql};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};
use uuid::Uuid;

const PAGE: &str = "query($e: String) { customers(first: 50, direction: DESC, filter: { email: $e }) { totalCount edges { node { id name email phone address } } } }";

fn contact(i: usize) -> CustomerContact {
    CustomerContact {
        name: format!("Seeded {i}"),
        email: format!("seeded{i}@example.com"),
        phone: Some(format!("+31 {i:08}")),
        address: i.is_multiple_of(2).then(|| format!("Street {i}")),
    }
}

/// Inserts `count` sealed customers of the retailer directly, in chunks, sealed by the hub's own
/// code (creating 20,000 through the API would take most of the test's time).
async fn seed(replicas: &Replicas, count: usize) -> Vec<Uuid> {
    let vault = &replicas.state.services.vault;
    let mut ids = Vec::with_capacity(count);
    let now = chrono::Utc::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let mut rows = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let id = Uuid::now_v7();
            let mut row = customer::ActiveModel {
                id: Set(id),
                owner_organization_id: Set(replicas.retailer_id),
                version: Set(1),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            };
            sensitive::write_contact(
                &mut row,
                sensitive::seal_contact(vault, id, &contact(i)).expect("sealed"),
            );
            rows.push(row);
            ids.push(id);
        }
        customer::Entity::insert_many(rows)
            .exec_without_returning(&replicas.state.db)
            .await
            .expect("seeded");
    }
    ids
}

/// Every sealed value of `row` names data key `key` in its header.
fn assert_sealed_under(row: &customer::Model, key: u32) {
    let values = [
        ("name", Some(&row.name_sealed)),
        ("email", Some(&row.email_sealed)),
        ("phone", row.phone_sealed.as_ref()),
        ("address", row.address_sealed.as_ref()),
    ];
    for (column, value) in values {
        let Some(value) = value else { continue };
        let place = api::crypto::FieldPlace {
            table: "customer",
            column,
            row: row.id,
        };
        assert_eq!(
            api::crypto::key_of(place, value).map(|id| id.0),
            Ok(key),
            "customer {} {column}",
            row.id
        );
    }
}

/// `hub keys ...` against the replicas' database, with the given master key file.
fn keys(replicas: &Replicas, master: &std::path::Path, args: &[&str]) -> String {
    let mut command = std::process::Command::new(hub_binary());
    for (name, _) in std::env::vars() {
        if name == "DATABASE_URL" || name.starts_with("HUB_") {
            command.env_remove(name);
        }
    }
    let output = command
        .env("DATABASE_URL", replicas.database_url())
        .env("HUB_MASTER_KEY_FILE", master)
        .env("RUST_LOG", "warn")
        .arg("keys")
        .args(args)
        .output()
        .expect("hub keys runs");
    assert!(
        output.status.success(),
        "hub keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

fn key_status(replicas: &Replicas) -> Value {
    serde_json::from_str(&keys(
        replicas,
        &replicas.master_key_path(),
        &["status", "--json"],
    ))
    .expect("status JSON")
}

/// Reads and writes through every replica until told to stop; counts what failed.
struct Load {
    stop: Arc<AtomicBool>,
    operations: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    first_failure: Arc<std::sync::Mutex<Option<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(urls: &[String], token: &str) -> Self {
        let load = Self {
            stop: Arc::default(),
            operations: Arc::default(),
            failures: Arc::default(),
            first_failure: Arc::default(),
            tasks: Vec::new(),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut tasks = Vec::new();
        for worker in 0..4usize {
            let (stop, operations, failures, first) = (
                load.stop.clone(),
                load.operations.clone(),
                load.failures.clone(),
                load.first_failure.clone(),
            );
            let (client, urls, token) = (client.clone(), urls.to_vec(), token.to_owned());
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let url = &urls[(worker + n) % urls.len()];
                    let outcome = if worker.is_multiple_of(2) {
                        read(&client, url, &token, n).await
                    } else {
                        write(&client, url, &token, worker, n).await
                    };
                    operations.fetch_add(1, Ordering::Relaxed);
                    if let Err(message) = outcome {
                        failures.fetch_add(1, Ordering::Relaxed);
                        first
                            .lock()
                            .map(|mut first| {
                                first.get_or_insert(message);
                            })
                            .ok();
                    }
                    n += 1;
                }
            }));
        }
        Self { tasks, ..load }
    }

    async fn finish(self) -> (u64, u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let first = self
            .first_failure
            .lock()
            .ok()
            .and_then(|first| first.clone());
        (
            self.operations.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            first,
        )
    }
}

/// A page of the newest customers, every field decrypted, and one seeded customer by email.
async fn read(client: &reqwest::Client, url: &str, token: &str, n: usize) -> Result<(), String> {
    let page = post_graphql(client, url, token, PAGE, json!({ "e": null })).await;
    if page.body.get("errors").is_some() {
        return Err(format!("page: {}", page.body));
    }
    let edges = page
        .body
        .pointer("/data/customers/edges")
        .and_then(Value::as_array);
    if edges.is_none_or(|edges| edges.iter().any(|edge| edge["node"]["name"].is_null())) {
        return Err(format!("page without names: {}", page.body));
    }
    let i = (n * 7919) % 2_000;
    let one = post_graphql(
        client,
        url,
        token,
        PAGE,
        json!({ "e": format!("seeded{i}@example.com") }),
    )
    .await;
    let name = one.body.pointer("/data/customers/edges/0/node/name");
    if name != Some(&json!(format!("Seeded {i}"))) {
        return Err(format!("seeded customer {i}: {}", one.body));
    }
    Ok(())
}

/// Creates a customer, then changes its phone.
async fn write(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    worker: usize,
    n: usize,
) -> Result<(), String> {
    let created = post_graphql(client, url, token,
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id version } } }",
        json!({ "i": { "name": format!("Writer {worker}-{n}"), "email": format!("w{worker}-{n}@example.com"), "phone": "1" } })).await;
    let Some(id) = created
        .body
        .pointer("/data/createCustomer/customer/id")
        .cloned()
    else {
        return Err(format!("create: {}", created.body));
    };
    let updated = post_graphql(
        client,
        url,
        token,
        "mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) { customer { phone } } }",
        json!({ "i": { "id": id, "version": 1, "phone": "2" } }),
    )
    .await;
    if updated.body.pointer("/data/updateCustomer/customer/phone") != Some(&json!("2")) {
        return Err(format!("update: {}", updated.body));
    }
    Ok(())
}

async fn wait_until_resealed(replicas: &Replicas, admin: &str, timeout: Duration) -> Vec<i64> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let status = post_graphql(
            &client,
            &replicas.urls[0],
            admin,
            "{ encryptionStatus { primaryKeyId pending } }",
            json!({}),
        )
        .await;
        let pending = status
            .data("/encryptionStatus/pending")
            .as_i64()
            .expect("pending");
        if seen.last() != Some(&pending) {
            seen.push(pending);
        }
        if pending == 0 {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "re-encryption did not finish: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_on_two_replicas_loses_nothing() {
    let env = [
        ("HUB_KEY_REFRESH_MS".to_owned(), "500".to_owned()),
        ("HUB_RESEAL_BATCH".to_owned(), "250".to_owned()),
        (
            "HUB_METRICS_TOKEN".to_owned(),
            "metrics-token-for-tests".to_owned(),
        ),
    ];
    let replicas = Replicas::start_with_env(2, &env).await;
    const CUSTOMERS: usize = 20_000;
    seed(&replicas, CUSTOMERS).await;
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    let load = Load::start(&replicas.urls, &admin);
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert!(
        keys(&replicas, &replicas.master_key_path(), &["rotate-data"])
            .contains("data key 2 is now primary")
    );
    // Progress is visible while the job runs: the CLI and the admin query agree on the numbers' shape,
    // and the replicas export it.
    let status = key_status(&replicas);
    assert_eq!(status["primary"], json!(2), "{status}");
    let seen = wait_until_resealed(&replicas, &admin, Duration::from_secs(240)).await;
    assert!(
        seen.iter()
            .any(|pending| *pending > 0 && *pending < CUSTOMERS as i64),
        "progress was seen part way: {seen:?}"
    );
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", replicas.urls[1]))
        .bearer_auth("metrics-token-for-tests")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("hub_encryption_rows_pending"),
        "the job's gauge is exported"
    );

    // The master key moves; the replicas keep serving with the keys they hold.
    let new_master = replicas.dir().join("new-master.key");
    api::auth::generate_secret_file(&new_master).expect("new master key");
    let rewrapped = keys(
        &replicas,
        &replicas.master_key_path(),
        &[
            "rotate-master",
            "--new-master-key-file",
            new_master.to_str().expect("path"),
        ],
    );
    assert!(rewrapped.starts_with("3 keys rewrapped"), "{rewrapped}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (operations, failures, first) = load.finish().await;
    assert!(operations > 100, "the clients kept working: {operations}");
    assert_eq!(failures, 0, "no read or write failed; first: {first:?}");

    // Writes made by a replica before it learned the new key are moved too.
    wait_until_resealed(&replicas, &admin, Duration::from_secs(60)).await;
    let status = key_status(&replicas);
    let customers = &status["tables"][0];
    assert_eq!(customers["table"], json!("customer"));
    let by_key = customers["rows_by_key"].as_array().expect("rows by key");
    assert_eq!(by_key.len(), 1, "every row under one key: {status}");
    assert_eq!(by_key[0][0], json!(2));
    assert!(by_key[0][1].as_i64().expect("rows") > CUSTOMERS as i64);
    // Not only the column: every value's own header names the new key.
    for row in customer::Entity::find()
        .all(&replicas.state.db)
        .await
        .expect("rows")
    {
        assert_sealed_under(&row, 2);
    }

    // The old master key is no longer needed: a replica starts with only the new one and reads
    // everything; one started with the old key is refused with a clear error.
    std::fs::remove_file(replicas.master_key_path()).expect("old master key removed");
    let fresh = replicas
        .spawn_one(&[(
            "HUB_MASTER_KEY_FILE".to_owned(),
            new_master.display().to_string(),
        )])
        .await;
    read(&reqwest::Client::new(), &fresh.url, &admin, 11)
        .await
        .expect("reads with the new master key");
    let another = replicas.dir().join("old-master.key");
    api::auth::generate_secret_file(&another).expect("a key");
    let log = replicas
        .refused(&[(
            "HUB_MASTER_KEY_FILE".to_owned(),
            another.display().to_string(),
        )])
        .await;
    assert!(
        log.contains("is not the one the data keys are wrapped with"),
        "{log}"
    );
    drop(fresh);
    replicas.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_re_encryption_resumes_after_restart() {
    // Small batches with pauses: the job is still running when it is killed.
    let env = [
        ("HUB_KEY_REFRESH_MS".to_owned(), "300".to_owned()),
        ("HUB_RESEAL_BATCH".to_owned(), "50".to_owned()),
        ("HUB_RESEAL_PAUSE_MS".to_owned(), "100".to_owned()),
    ];
    let mut replicas = Replicas::start_with_env(1, &env).await;
    const CUSTOMERS: usize = 3_000;
    let ids = seed(&replicas, CUSTOMERS).await;
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    keys(&replicas, &replicas.master_key_path(), &["rotate-data"]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let pending = |status: &Value| status["pending"].as_i64().expect("pending");
    loop {
        let status = key_status(&replicas);
        if pending(&status) < CUSTOMERS as i64 - 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "re-encryption did not start: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replicas.kill(0);
    let at_kill = pending(&key_status(&replicas));
    assert!(at_kill > 0, "killed midway, with rows left");

    // A new process resumes from what the table says and finishes.
    let restarted = replicas.spawn_one(&env).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while pending(&key_status(&replicas)) > 0 {
        assert!(
            Instant::now() < deadline,
            "re-encryption did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing lost: every seeded customer opens to its value, under the new key.
    let vault = &replicas.state.services.vault;
    vault.refresh().await.expect("learn the new key");
    let rows = customer::Entity::find()
        .all(&replicas.state.db)
        .await
        .expect("rows");
    assert_eq!(rows.len(), CUSTOMERS);
    for (i, id) in ids.iter().enumerate() {
        let row = rows.iter().find(|row| row.id == *id).expect("row kept");
        assert_eq!(row.key_id, 2, "customer {i} is under the new key");
        assert_sealed_under(row, 2);
        assert_eq!(
            sensitive::read_contact(vault, row).await.expect("opens"),
            contact(i),
            "customer {i}"
        );
    }
    let page = post_graphql(
        &client,
        &restarted.url,
        &admin,
        PAGE,
        json!({ "e": "seeded7@example.com" }),
    )
    .await;
    assert_eq!(
        page.data("/customers/edges/0/node/name"),
        &json!("Seeded 7")
    );
    drop(restarted);
    replicas.stop().await;
}
