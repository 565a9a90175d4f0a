//! Several real `hub` processes on one fresh PostgreSQL database: what production runs, for the races
//! that an in-process lock could hide.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use api::{auth::Role, config::HubConfig, state::AppState};
use uuid::Uuid;

use crate::{Fingerprint, TestDatabase, free_port, hub_binary};

/// Where the harness keeps a production-mode hub's master key, in its data directory (replicas started
/// with that directory read it from there).
pub const MASTER_KEY_FILE: &str = "operator-master.key";
/// The audit key's file, beside the master key.
pub const AUDIT_KEY_FILE: &str = "operator-audit.key";

pub struct Replicas {
    /// Base URLs, one per process.
    pub urls: Vec<String>,
    /// An in-process view of the same database (not serving): mints tokens, takes fingerprints.
    pub state: AppState,
    pub retailer_id: Uuid,
    children: Vec<Child>,
    database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl Replicas {
    pub async fn start(count: usize) -> Self {
        Self::start_with_env(count, &[]).await
    }

    /// Replicas with extra environment (for example `REDIS_URL`).
    pub async fn start_with_env(count: usize, env: &[(String, String)]) -> Self {
        let database = TestDatabase::create().await;
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("signing-key.pem");
        api::auth::generate_signing_key_file(&key).expect("key");
        let mut config = HubConfig::with_data_dir(dir.path());
        config.database_url = Some(database.url().to_owned());
        config.signing_key_file = Some(key.clone());
        let hash_key = dir.path().join("number-hash.key");
        api::auth::generate_secret_file(&hash_key).expect("number-hash key");
        config.number_hash_key_file = Some(hash_key.clone());
        let master_key = dir.path().join(MASTER_KEY_FILE);
        api::auth::generate_secret_file(&master_key).expect("master key");
        config.master_key_file = Some(master_key);
        let audit_key = dir.path().join(AUDIT_KEY_FILE);
        api::auth::generate_secret_file(&audit_key).expect("audit key");
        config.audit_key_file = Some(audit_key);
        // Migrate and bootstrap before the replicas start, so minting tokens below cannot race them.
        let state = api::server::prepare(config)
            .await
            .expect("prepare database");
        let mut children = Vec::new();
        let mut urls = Vec::new();
        for index in 0..count {
            let (child, url) = spawn_hub(
                database.url(),
                &key,
                &hash_key,
                dir.path(),
                index,
                free_port(),
                env,
            );
            children.push(child);
            urls.push(url);
        }
        let retailer_id = state
            .services
            .identity
            .find_organization("Retailer")
            .await
            .expect("retailer")
            .id;
        let replicas = Self {
            urls,
            state,
            retailer_id,
            children,
            database: Some(database),
            _dir: dir,
        };
        replicas.wait_until_healthy().await;
        replicas
    }

    async fn wait_until_healthy(&self) {
        for url in &self.urls {
            wait_until_healthy(url).await;
        }
    }

    pub async fn token(&self, organization: Uuid, role: Role) -> String {
        let identity = &self.state.services.identity;
        let name = format!("test-{role:?}").to_lowercase();
        let member = identity
            .ensure_member(organization, &name, role.try_into().expect("a member role"))
            .await
            .expect("member");
        identity.mint_for(&member, None).expect("token").token
    }

    pub async fn fingerprint(&self) -> Fingerprint {
        crate::fingerprint::wait_for_stamping(&self.state.db).await;
        Fingerprint::take(&self.state.db).await
    }

    pub fn database_url(&self) -> &str {
        self.database.as_ref().map_or("", |database| database.url())
    }

    /// The directory the replicas share (keys, logs).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The master key file the replicas were started with.
    pub fn master_key_path(&self) -> std::path::PathBuf {
        self.dir().join(MASTER_KEY_FILE)
    }

    /// `kill -9` of replica `index`: it gets no chance to finish anything.
    pub fn kill(&mut self, index: usize) {
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
    }

    /// One more replica process on the same database, with extra environment (which wins).
    pub async fn spawn_one(&self, env: &[(String, String)]) -> ReplicaProcess {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(50);
        let index = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (child, url) = spawn_hub(
            self.database_url(),
            &self.dir().join("signing-key.pem"),
            &self.dir().join("number-hash.key"),
            self.dir(),
            index,
            free_port(),
            env,
        );
        wait_until_healthy(&url).await;
        ReplicaProcess {
            url,
            log: self.dir().join(format!("replica-{index}.log")),
            child,
        }
    }

    /// A replica that must refuse to start (within 60 s); returns what it logged.
    pub async fn refused(&self, env: &[(String, String)]) -> String {
        ReplicaProcess::refused(
            self.database_url(),
            &self.dir().join("signing-key.pem"),
            &self.dir().join("number-hash.key"),
            self.dir(),
            env,
        )
        .await
    }

    /// Kills the processes and drops the database.
    pub async fn stop(mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.state.db.clone().close().await.ok();
        if let Some(database) = self.database.take() {
            database.drop_database().await;
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        // A failing test must not leave processes behind.
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test shows what the replicas logged as errors (their logs die with the directory).
        if std::thread::panicking() {
            for index in 0..self.children.len() {
                let log = self._dir.path().join(format!("replica-{index}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                for line in text.lines().filter(|line| line.contains("ERROR")) {
                    eprintln!("replica {index}: {line}");
                }
            }
        }
    }
}

/// Starts one `hub` process on `database_url` with the given keys, logging to `dir`. Returns it and its
/// base URL.
pub(crate) fn spawn_hub(
    database_url: &str,
    key: &std::path::Path,
    hash_key: &std::path::Path,
    dir: &std::path::Path,
    index: usize,
    port: u16,
    extra_env: &[(String, String)],
) -> (Child, String) {
    let log = std::fs::File::create(dir.join(format!("replica-{index}.log"))).expect("log file");
    let mut command = Command::new(hub_binary());
    for (name, _) in std::env::vars() {
        if name == "DATABASE_URL" || name == "REDIS_URL" || name.starts_with("HUB_") {
            command.env_remove(name);
        }
    }
    let child = command
        .env("DATABASE_URL", database_url)
        .env("HUB_SIGNING_KEY_FILE", key)
        .env("HUB_NUMBER_HASH_KEY_FILE", hash_key)
        .env("HUB_MASTER_KEY_FILE", dir.join(MASTER_KEY_FILE))
        .env("HUB_AUDIT_KEY_FILE", dir.join(AUDIT_KEY_FILE))
        .env("HUB_DATA_DIR", dir)
        .env("HUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("hub replica starts");
    (child, format!("http://127.0.0.1:{port}"))
}

/// Waits (at most 60 s) until `url` answers `/healthz`.
pub(crate) async fn wait_until_healthy(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{url}/healthz")).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {url} did not become healthy within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A second replica, as a real process, next to an in-process [`crate::TestApp`] on PostgreSQL.
pub struct ReplicaProcess {
    pub url: String,
    /// What the process logs (stderr).
    pub log: std::path::PathBuf,
    child: Child,
}

impl ReplicaProcess {
    pub(crate) async fn start(
        database_url: &str,
        key: &std::path::Path,
        hash_key: &std::path::Path,
        dir: &std::path::Path,
        port: u16,
        env: &[(String, String)],
    ) -> Self {
        let (child, url) = spawn_hub(database_url, key, hash_key, dir, 99, port, env);
        wait_until_healthy(&url).await;
        Self {
            url,
            log: dir.join("replica-99.log"),
            child,
        }
    }

    /// Starts a hub that must exit with an error within 60 s; returns its log.
    pub(crate) async fn refused(
        database_url: &str,
        key: &std::path::Path,
        hash_key: &std::path::Path,
        dir: &std::path::Path,
        env: &[(String, String)],
    ) -> String {
        const INDEX: usize = 98;
        let (mut child, url) = spawn_hub(database_url, key, hash_key, dir, INDEX, free_port(), env);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("hub process status") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the hub at {url} did not refuse to start within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "the hub was expected to refuse to start");
        std::fs::read_to_string(dir.join(format!("replica-{INDEX}.log"))).expect("replica log")
    }

    /// `kill -9`: the process gets no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
