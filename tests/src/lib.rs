//! Test harness: starts the real hub in-process on an ephemeral port against a fresh PostgreSQL database
//! or a temporary SQLite file, mints tokens for any organization and role, sends GraphQL over HTTP, and
//! fingerprints the database to prove that a refused request changed nothing.

pub mod browser;
pub mod checkout;
mod fingerprint;
mod postgres;
mod private_redis;
mod replicas;
mod subscriber;
pub mod tablet;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use api::{
    auth::Role,
    config::HubConfig,
    server::{self, RunningHub},
};
use entities::organization::OrganizationKind;
pub use fingerprint::Fingerprint;
use serde_json::{Value, json};
use uuid::Uuid;

pub use api::records::{GlobalId, RecordKind};
pub use postgres::TestDatabase;
pub use private_redis::PrivateRedis;
pub use replicas::{AUDIT_KEY_FILE, MASTER_KEY_FILE, ReplicaProcess, Replicas};
pub use subscriber::{Received, Subscriber};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A GraphQL answer: HTTP status and the JSON body.
#[derive(Debug, Clone)]
pub struct GqlResponse {
    pub status: u16,
    pub body: Value,
}

impl GqlResponse {
    /// `data` at a JSON pointer, failing the test with the whole body if there were errors.
    pub fn data(&self, pointer: &str) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        self.body
            .pointer(&format!("/data{pointer}"))
            .unwrap_or_else(|| panic!("no data at {pointer}: {}", self.body))
    }

    /// The first error's `extensions.code`.
    pub fn error_code(&self) -> Option<&str> {
        self.body
            .pointer("/errors/0/extensions/code")
            .and_then(Value::as_str)
    }

    /// Asserts that the request failed with `code`, and returns self for more checks.
    #[track_caller]
    pub fn expect_error(&self, code: &str) -> &Self {
        assert_eq!(
            self.error_code(),
            Some(code),
            "expected {code}, got {}",
            self.body
        );
        self
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub hub: RunningHub,
    pub base_url: String,
    pub client: reqwest::Client,
    pub retailer_id: Uuid,
    data_dir: tempfile::TempDir,
    database: Option<TestDatabase>,
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a hub with the default configuration adjusted by `configure`.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut HubConfig)) -> Self {
        api::telemetry::init_logging(api::config::LogFormat::Text);
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let mut config = HubConfig::with_data_dir(data_dir.path());
        let database = match backend {
            Backend::Postgres => {
                let database = TestDatabase::create().await;
                config.database_url = Some(database.url().to_owned());
                // Production mode never generates keys: supply one, as an operator would.
                let key = data_dir.path().join("operator-signing-key.pem");
                api::auth::generate_signing_key_file(&key).expect("signing key");
                config.signing_key_file = Some(key);
                let hash_key = data_dir.path().join("operator-number-hash.key");
                api::auth::generate_secret_file(&hash_key).expect("number-hash key");
                config.number_hash_key_file = Some(hash_key);
                let master_key = data_dir.path().join(replicas::MASTER_KEY_FILE);
                api::auth::generate_secret_file(&master_key).expect("master key");
                config.master_key_file = Some(master_key);
                let audit_key = data_dir.path().join(replicas::AUDIT_KEY_FILE);
                api::auth::generate_secret_file(&audit_key).expect("audit key");
                config.audit_key_file = Some(audit_key);
                Some(database)
            }
            Backend::Sqlite => None,
        };
        configure(&mut config);
        let hub = server::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("hub starts");
        let retailer_id = hub
            .state
            .services
            .identity
            .find_organization("Retailer")
            .await
            .expect("bootstrap created the retailer")
            .id;
        Self {
            backend,
            base_url: format!("http://{}", hub.addr),
            hub,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            retailer_id,
            data_dir,
            database,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().to_owned()
    }

    /// The signing key file the hub uses.
    pub fn signing_key_path(&self) -> PathBuf {
        self.hub.state.config.signing_key_path()
    }

    /// A token for a member named `test-<role>` of `organization`, created on first use.
    pub async fn token(&self, organization: Uuid, role: Role) -> String {
        self.token_for(organization, &format!("test-{role:?}").to_lowercase(), role)
            .await
    }

    pub async fn token_for(&self, organization: Uuid, member: &str, role: Role) -> String {
        self.member_with_token(organization, member, role, None)
            .await
            .1
    }

    /// The member `name` of `organization` (created if missing) and a token for it lasting `ttl` (the
    /// hub's default when `None`).
    pub async fn member_with_token(
        &self,
        organization: Uuid,
        name: &str,
        role: Role,
        ttl: Option<Duration>,
    ) -> (Uuid, String) {
        let identity = &self.hub.state.services.identity;
        let member = identity
            .ensure_member(organization, name, role.try_into().expect("a member role"))
            .await
            .expect("test member");
        let token = identity.mint_for(&member, ttl).expect("token").token;
        (member.id, token)
    }

    /// Creates an organization directly through the service (setup, not the behaviour under test).
    pub async fn create_organization(&self, name: &str, kind: OrganizationKind) -> Uuid {
        let admin = self.token(self.retailer_id, Role::Admin).await;
        let kind = match kind {
            OrganizationKind::Retailer => "RETAILER",
            OrganizationKind::Supplier => "SUPPLIER",
            OrganizationKind::Logistics => "LOGISTICS",
            OrganizationKind::FinancialProvider => "FINANCIAL_PROVIDER",
            OrganizationKind::ServiceProvider => "SERVICE_PROVIDER",
        };
        let response = self
            .graphql(
                Some(&admin),
                "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }",
                json!({ "input": { "name": name, "kind": kind, "adminName": "admin" } }),
            )
            .await;
        let id = response
            .data("/createOrganization/organization/id")
            .as_str()
            .expect("id");
        decode_global_id(id)
    }

    /// Waits until the hub listens to the bus: its first connection empties the access cache, which a
    /// test counting statements must not see in the middle of its count.
    pub async fn wait_for_bus(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.hub.state.outbox.bus().is_listening() {
            assert!(
                std::time::Instant::now() < deadline,
                "the hub never listened to its bus"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// POSTs a GraphQL request with an optional bearer token.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> GqlResponse {
        let body = json!({ "query": query, "variables": variables });
        self.post_raw(token, body.to_string().into_bytes()).await
    }

    /// POSTs raw bytes to `/graphql`.
    pub async fn post_raw(&self, token: Option<&str>, body: Vec<u8>) -> GqlResponse {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base_url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches the hub");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.expect("JSON body");
        GqlResponse { status, body }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("request reaches the hub")
    }

    /// Row counts and checksums of every table, once the outbox has stamped every committed event
    /// (stamping happens after commit, in the background, and would otherwise show up as a change).
    pub async fn fingerprint(&self) -> Fingerprint {
        fingerprint::wait_for_stamping(&self.hub.state.db).await;
        Fingerprint::take(&self.hub.state.db).await
    }

    /// Starts a second replica of this hub as a real process on the same PostgreSQL database.
    pub async fn spawn_replica(&self) -> ReplicaProcess {
        let hash_key = self.hub.state.config.number_hash_key_path();
        self.spawn_replica_with_hash_key(&hash_key).await
    }

    /// Starts a second replica with another number-hash key file (a rotated ring, say).
    pub async fn spawn_replica_with_hash_key(&self, hash_key: &std::path::Path) -> ReplicaProcess {
        self.spawn_replica_at(hash_key, free_port()).await
    }

    /// A second replica with extra environment (which wins over this hub's), e.g. a log level.
    pub async fn spawn_replica_with_env(&self, env: &[(String, String)]) -> ReplicaProcess {
        let config = &self.hub.state.config;
        let mut all = self.replica_env();
        all.extend(env.iter().cloned());
        ReplicaProcess::start(
            &self.replica_database_url(),
            &config.signing_key_path(),
            &config.number_hash_key_path(),
            self.data_dir.path(),
            free_port(),
            &all,
        )
        .await
    }

    /// A replica on a chosen port (to restart a stopped one where its clients expect it).
    pub async fn spawn_replica_on(&self, port: u16) -> ReplicaProcess {
        let hash_key = self.hub.state.config.number_hash_key_path();
        self.spawn_replica_at(&hash_key, port).await
    }

    async fn spawn_replica_at(&self, hash_key: &std::path::Path, port: u16) -> ReplicaProcess {
        let config = &self.hub.state.config;
        ReplicaProcess::start(
            &self.replica_database_url(),
            &config.signing_key_path(),
            hash_key,
            self.data_dir.path(),
            port,
            &self.replica_env(),
        )
        .await
    }

    /// Starts a replica that must refuse to start (within 60 s); returns what it logged.
    pub async fn replica_refuses_to_start(&self, hash_key: &std::path::Path) -> String {
        let config = &self.hub.state.config;
        ReplicaProcess::refused(
            &self.replica_database_url(),
            &config.signing_key_path(),
            hash_key,
            self.data_dir.path(),
            &self.replica_env(),
        )
        .await
    }

    fn replica_database_url(&self) -> String {
        self.hub
            .state
            .config
            .database_url
            .clone()
            .expect("replicas need PostgreSQL")
    }

    /// The replica shares this hub's payment limits (a process reads them from its environment).
    fn replica_env(&self) -> Vec<(String, String)> {
        let limits = &self.hub.state.config.payment_limits;
        [
            (
                "HUB_CONTACTLESS_LIMIT_MINOR",
                limits.contactless_limit_minor.to_string(),
            ),
            (
                "HUB_CARD_VELOCITY_COUNT",
                limits.card_velocity_count.to_string(),
            ),
            (
                "HUB_CARD_VELOCITY_SUM_MINOR",
                limits.card_velocity_sum_minor.to_string(),
            ),
            (
                "HUB_CARD_VELOCITY_TERMINALS",
                limits.card_velocity_terminals.to_string(),
            ),
            ("HUB_DEVICE_CAP_MINOR", limits.device_cap_minor.to_string()),
            (
                "HUB_OFFLINE_FLOOR_MINOR",
                limits.offline_floor_minor.to_string(),
            ),
            (
                "HUB_SEQUENCE_GAP_WINDOW",
                limits.sequence_gap_window.to_string(),
            ),
            (
                "HUB_DISTANT_TERMINAL_SECS",
                limits.distant_terminal_secs.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Stops the hub and drops its database.
    pub async fn stop(self) {
        self.hub.stop().await.expect("hub stops cleanly");
        if let Some(database) = self.database {
            database.drop_database().await;
        }
    }
}

/// POSTs a GraphQL request to any hub (a replica, say) and returns status and body.
pub async fn post_graphql(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> GqlResponse {
    let response = client
        .post(format!("{base_url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request reaches the hub");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("JSON body");
    GqlResponse { status, body }
}

/// Registers a terminal device named `name` with the key made of `seed`, at a new shop of the
/// caller's organization, through the hub at `base_url`; returns the device's id and key.
pub async fn register_device(
    client: &reqwest::Client,
    base_url: &str,
    admin: &str,
    name: &str,
    seed: u8,
) -> (Uuid, ed25519_dalek::SigningKey) {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let location = post_graphql(client, base_url, admin, "mutation { createLocation(input: { name: \"Store\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
        .await
        .data("/createLocation/location/id")
        .clone();
    let device = post_graphql(client, base_url, admin, "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
        json!({ "input": { "name": name, "locationId": location, "publicKey": STANDARD.encode(key.verifying_key().as_bytes()) } }))
        .await
        .data("/registerDevice/device/id")
        .as_str()
        .expect("id")
        .to_owned();
    (decode_global_id(&device), key)
}

/// The UUID inside a global ID the hub minted, of whatever kind.
pub fn decode_global_id(id: &str) -> Uuid {
    id.parse::<GlobalId>().expect("a global ID").id
}

/// The global ID of the record `id` of `kind`, for tests that build IDs of their own.
pub fn encode_global_id(kind: RecordKind, id: Uuid) -> String {
    kind.global_id(id).to_string()
}

/// Every stored value of a sealed `column` of `table`, as raw bytes (what a stolen dump holds).
pub async fn sealed_values(
    db: &sea_orm::DatabaseConnection,
    table: &str,
    column: &str,
) -> Vec<Vec<u8>> {
    use sea_orm::ConnectionTrait;
    let backend = db.get_database_backend();
    db.query_all_raw(sea_orm::Statement::from_string(
        backend,
        format!("SELECT {column} AS value FROM {table}"),
    ))
    .await
    .expect("read sealed values")
    .iter()
    .map(|row| row.try_get::<Vec<u8>>("", "value").expect("bytes"))
    .collect()
}

/// Runs one async test body against both backends, as two tests named `postgres` and `sqlite`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::Backend::Postgres).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::Backend::Sqlite).await;
            }
        }
    };
}

/// Runs one async test body against PostgreSQL only.
#[macro_export]
macro_rules! on_postgres {
    ($name:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $body($crate::Backend::Postgres).await;
        }
    };
}

/// The `hub` binary next to the test executable (`target/<profile>/hub`), or `HUB_BIN`.
pub fn hub_binary() -> PathBuf {
    if let Ok(path) = std::env::var("HUB_BIN") {
        return PathBuf::from(path);
    }
    workspace_binary("hub")
}

/// A binary of the workspace next to the test executable (`target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("target directory");
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`; scripts/test.sh does)",
        path.display()
    );
    path
}

/// The workspace root (for files such as `schema.graphql`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free TCP port on the loopback interface (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// The Redis server the suite uses (`HUB_TEST_REDIS_URL`, default the local one).
pub fn redis_url() -> String {
    std::env::var("HUB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}
