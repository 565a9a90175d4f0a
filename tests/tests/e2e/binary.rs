//! The real `hub` binary as a user runs it: fresh directory, command-line tools, production refusals,
//! schema drift, and replicas starting together.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use api::{config::HubConfig, server};
use hub_tests::{TestDatabase, free_port, hub_binary, workspace_root};
use serde_json::{Value, json};

/// A `hub` command with no configuration inherited from the environment (CI exports DATABASE_URL).
fn hub(dir: &std::path::Path) -> Command {
    let mut command = Command::new(hub_binary());
    command.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key == "DATABASE_URL" || key == "REDIS_URL" || key.starts_with("HUB_") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "info");
    command
}

async fn me(client: &reqwest::Client, base: &str, token: &str) -> Value {
    client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": "{ me { role organization { name kind } } }" }))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json")
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn fresh_binary_in_an_empty_directory_serves_with_a_working_admin_token() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut child = hub(dir.path())
        .env("HUB_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hub starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // A generous deadline only turns a hang into a failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status() == 200
        {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "hub exited during start"
        );
        assert!(
            Instant::now() < deadline,
            "hub did not answer /healthz within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let token_path = dir.path().join("data/admin.token");
    let token = std::fs::read_to_string(&token_path)
        .expect("admin token written")
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        assert_eq!(mode(&token_path), 0o600, "admin token is private");
        assert_eq!(
            mode(&dir.path().join("data")),
            0o700,
            "data directory is private"
        );
        assert_eq!(
            mode(&dir.path().join("data/signing-key.pem")),
            0o600,
            "signing key is private"
        );
    }
    let answer = me(&client, &base, &token).await;
    assert_eq!(answer["data"]["me"]["role"], "ADMIN", "{answer}");
    assert_eq!(answer["data"]["me"]["organization"]["kind"], "RETAILER");

    // The operator's command line mints working tokens for the same database.
    let output = hub(dir.path())
        .args(["token", "create", "--org", "Retailer", "--role", "viewer"])
        .output()
        .expect("token create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let viewer = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let answer = me(&client, &base, &viewer).await;
    assert_eq!(answer["data"]["me"]["role"], "VIEWER", "{answer}");

    // SIGTERM stops it gracefully.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "hub did not stop within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "graceful exit, got {exit}");
}

#[tokio::test]
async fn production_mode_without_a_key_refuses_to_start() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("no-such-key.pem");
    let output = hub(dir.path())
        .env("DATABASE_URL", database.url())
        .env("HUB_SIGNING_KEY_FILE", &missing)
        .env("HUB_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .expect("hub runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "must not start: {stderr}");
    assert!(stderr.contains("never generates keys"), "{stderr}");
    assert!(
        stderr.contains(&missing.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(!missing.exists(), "no key was generated");

    // Migrations need the master key (an upgrade seals plaintext left by an older schema): without
    // one, production mode says which setting is missing and creates nothing.
    let output = hub(dir.path())
        .env("DATABASE_URL", database.url())
        .arg("migrate")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "migrate without a master key: {stderr}"
    );
    assert!(stderr.contains("HUB_MASTER_KEY_FILE"), "{stderr}");
    assert!(!dir.path().join("data/master.key").exists());
    let master = dir.path().join("master.key");
    api::auth::generate_secret_file(&master).expect("master key");
    let output = hub(dir.path())
        .env("DATABASE_URL", database.url())
        .env("HUB_MASTER_KEY_FILE", &master)
        .arg("migrate")
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "migrate with a master key: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = hub(dir.path())
        .env("DATABASE_URL", database.url())
        .args(["token", "create", "--org", "Retailer", "--role", "ADMIN"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("never generates keys"));
    assert!(!dir.path().join("data/signing-key.pem").exists());
    database.drop_database().await;
}

#[test]
fn schema_graphql_matches_the_code() {
    let output = Command::new(hub_binary())
        .arg("schema")
        .output()
        .expect("hub schema");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let committed =
        std::fs::read_to_string(workspace_root().join("schema.graphql")).unwrap_or_default();
    assert!(
        generated == committed,
        "schema.graphql differs from `hub schema`; regenerate it with \
         `cargo run -q --bin hub -- schema > schema.graphql` and review the diff"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_bootstrap_once() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("key.pem");
    api::auth::generate_signing_key_file(&key).expect("key");
    let hash_key = dir.path().join("number-hash.key");
    api::auth::generate_secret_file(&hash_key).expect("number-hash key");
    let master_key = dir.path().join("master.key");
    api::auth::generate_secret_file(&master_key).expect("master key");
    let audit_key = dir.path().join("audit.key");
    api::auth::generate_secret_file(&audit_key).expect("audit key");
    let config = || {
        let mut config = HubConfig::with_data_dir(dir.path());
        config.database_url = Some(database.url().to_owned());
        config.signing_key_file = Some(key.clone());
        config.number_hash_key_file = Some(hash_key.clone());
        config.master_key_file = Some(master_key.clone());
        config.audit_key_file = Some(audit_key.clone());
        config
    };
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (a, b, c) = tokio::join!(
        server::start(config(), any),
        server::start(config(), any),
        server::start(config(), any)
    );
    let (a, b, c) = (
        a.expect("replica a"),
        b.expect("replica b"),
        c.expect("replica c"),
    );
    let fingerprint = hub_tests::Fingerprint::take(&a.state.db).await;
    assert_eq!(fingerprint.rows("organization"), 1, "one retailer");
    assert_eq!(fingerprint.rows("member"), 1, "one bootstrap admin");
    assert_eq!(
        fingerprint.rows("encryption_key"),
        2,
        "one data key and one blind-index key"
    );
    for hub in [a, b, c] {
        hub.stop().await.expect("stop");
    }
    database.drop_database().await;
}
