//! Command line and environment configuration (clap): one struct for everything the hub reads at start.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

/// Where state lives and how the hub behaves; shared by `serve`, `token create` and `migrate`.
#[derive(Debug, Clone, Args)]
pub struct HubConfig {
    /// Database URL. Unset: SQLite in the data directory (the embedded default). `postgres://...` selects
    /// production mode, where keys are never generated.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Redis URL for fan-out between replicas (optional; the embedded default needs none).
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// Directory for the embedded database, generated keys and the bootstrap admin token.
    #[arg(long, env = "HUB_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// PKCS#8 PEM file with the hub's ed25519 token-signing key. Default: `<data-dir>/signing-key.pem`,
    /// created on first start in embedded mode; required in production mode.
    #[arg(long, env = "HUB_SIGNING_KEY_FILE", global = true)]
    pub signing_key_file: Option<PathBuf>,

    /// File with the 32-byte secret (base64) keying the one-time-number hash. Default:
    /// `<data-dir>/number-hash.key`, created on first start in embedded mode; required in production.
    #[arg(long, env = "HUB_NUMBER_HASH_KEY_FILE", global = true)]
    pub number_hash_key_file: Option<PathBuf>,

    /// File with the master key (32 bytes, base64) that wraps the field-encryption keys. Default:
    /// `<data-dir>/master.key`, created on first start in embedded mode; production needs this, or
    /// the key itself (base64) in the environment variable `HUB_MASTER_KEY` (never a flag).
    #[arg(long, env = "HUB_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,

    /// File with the 32-byte audit key (base64) that links the audit trail's hash chains; it must
    /// never be stored in the database. Default: `<data-dir>/audit.key`, created on first start in
    /// embedded mode; required in production, the same for every replica.
    #[arg(long, env = "HUB_AUDIT_KEY_FILE", global = true)]
    pub audit_key_file: Option<PathBuf>,

    /// `iss` and `aud` of the tokens the hub mints and accepts.
    #[arg(
        long,
        env = "HUB_TOKEN_AUDIENCE",
        default_value = "iot-commerce-hub",
        global = true
    )]
    pub token_audience: String,

    /// Longest lifetime (`exp - iat`) of a partner token the hub mints or accepts, in seconds. A token
    /// claiming a longer life is refused even with a good signature.
    #[arg(
        long,
        env = "HUB_MAX_TOKEN_LIFETIME_SECS",
        default_value_t = 7 * 24 * 3600,
        value_parser = clap::value_parser!(u64).range(60..=31 * 24 * 3600),
        global = true
    )]
    pub max_token_lifetime_secs: u64,
    /// How long this replica may serve a caller's member or device record from memory, in
    /// milliseconds (0: read it on every request). Removals and revocations are announced to every
    /// replica at once; this bounds what a lost announcement costs.
    #[arg(
        long,
        env = "HUB_ACCESS_CACHE_MS",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(0..=60_000),
        global = true
    )]
    pub access_cache_ms: u64,

    /// A separate address serving only `/metrics` (for a scraper on a private network). Without it,
    /// `/metrics` on the main listener needs `--metrics-token`, and is not served at all without one.
    #[arg(long, env = "HUB_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Bearer token that opens `/metrics` on the main listener (at least 16 characters).
    #[arg(
        long,
        env = "HUB_METRICS_TOKEN",
        global = true,
        hide_env_values = true,
        value_parser = metrics_token
    )]
    pub metrics_token: Option<String>,

    /// Name of the retailer organization created on first start.
    #[arg(
        long,
        env = "HUB_RETAILER_NAME",
        default_value = "Retailer",
        global = true
    )]
    pub retailer_name: String,

    /// Log output format.
    #[arg(long, env = "HUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub payment_limits: PaymentLimits,

    #[command(flatten)]
    pub subscriptions: SubscriptionLimits,

    #[command(flatten)]
    pub encryption: EncryptionSettings,

    #[command(flatten)]
    pub clearing: ClearingSettings,
}

/// How long authorizations wait for their capture, and when clearing batches close by themselves.
#[derive(Debug, Clone, Args)]
pub struct ClearingSettings {
    /// An authorization not captured within this many seconds expires: the hub releases it and the
    /// order's balance is owed again. Judged by the database clock.
    #[arg(long, env = "HUB_CAPTURE_WINDOW_SECS", default_value_t = 7 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600), global = true)]
    pub capture_window_secs: u64,
    /// An open clearing batch closes by itself this many seconds after it opened (0: only its
    /// merchant's ADMIN closes it).
    #[arg(long, env = "HUB_CLEARING_CLOSE_AFTER_SECS", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(u64).range(0..=31 * 24 * 3600), global = true)]
    pub close_after_secs: u64,
}

impl Default for ClearingSettings {
    fn default() -> Self {
        Self {
            capture_window_secs: 7 * 24 * 3600,
            close_after_secs: 24 * 3600,
        }
    }
}

impl ClearingSettings {
    pub fn capture_window(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.capture_window_secs as i64)
    }

    /// `None` when batches close by hand only.
    pub fn close_after(&self) -> Option<chrono::TimeDelta> {
        (self.close_after_secs > 0)
            .then(|| chrono::TimeDelta::seconds(self.close_after_secs as i64))
    }
}

/// Pace of field encryption's background work.
#[derive(Debug, Clone, Args)]
pub struct EncryptionSettings {
    /// Rows re-encrypted per transaction after a data-key rotation.
    #[arg(long, env = "HUB_RESEAL_BATCH", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000), global = true)]
    pub reseal_batch: u64,
    /// Pause between two re-encryption batches, in milliseconds (requests get the database between).
    #[arg(long, env = "HUB_RESEAL_PAUSE_MS", default_value_t = 20, global = true)]
    pub reseal_pause_ms: u64,
    /// How often each replica reads the key table for keys rotated elsewhere, in milliseconds.
    #[arg(
        long,
        env = "HUB_KEY_REFRESH_MS",
        default_value_t = 2_000,
        global = true
    )]
    pub key_refresh_ms: u64,
}

impl Default for EncryptionSettings {
    fn default() -> Self {
        Self {
            reseal_batch: 200,
            reseal_pause_ms: 20,
            key_refresh_ms: 2_000,
        }
    }
}

/// Limits of the secure payment mode, in minor units of the payment's currency.
#[derive(Debug, Clone, Args)]
pub struct PaymentLimits {
    /// Largest contactless payment without cardholder verification (above: CVM_REQUIRED).
    #[arg(
        long,
        env = "HUB_CONTACTLESS_LIMIT_MINOR",
        default_value_t = 5_000,
        global = true
    )]
    pub contactless_limit_minor: i64,
    /// Payments per card per 24 h before cardholder verification is required.
    #[arg(
        long,
        env = "HUB_CARD_VELOCITY_COUNT",
        default_value_t = 10,
        global = true
    )]
    pub card_velocity_count: u64,
    /// Sum per card per 24 h before cardholder verification is required.
    #[arg(
        long,
        env = "HUB_CARD_VELOCITY_SUM_MINOR",
        default_value_t = 20_000,
        global = true
    )]
    pub card_velocity_sum_minor: i64,
    /// Distinct terminals per card per 24 h before cardholder verification is required.
    #[arg(
        long,
        env = "HUB_CARD_VELOCITY_TERMINALS",
        default_value_t = 3,
        global = true
    )]
    pub card_velocity_terminals: u64,
    /// Value one device may take per 24 h (above: LIMIT_EXCEEDED).
    #[arg(
        long,
        env = "HUB_DEVICE_CAP_MINOR",
        default_value_t = 1_000_000,
        global = true
    )]
    pub device_cap_minor: i64,
    /// Largest payment accepted after the tap deadline (an offline tap submitted late).
    #[arg(
        long,
        env = "HUB_OFFLINE_FLOOR_MINOR",
        default_value_t = 2_500,
        global = true
    )]
    pub offline_floor_minor: i64,
    /// Seconds between a payment request and its tap deadline.
    #[arg(
        long,
        env = "HUB_TAP_DEADLINE_SECS",
        default_value_t = 120,
        global = true
    )]
    pub tap_deadline_secs: i64,
    /// Seconds after the tap deadline during which a late submission may still be accepted.
    #[arg(
        long,
        env = "HUB_OFFLINE_GRACE_SECS",
        default_value_t = 900,
        global = true
    )]
    pub offline_grace_secs: i64,
    /// A card sequence more than this above the card's highest used one flags the payment
    /// SEQUENCE_GAP (numbers generated and never submitted, or a cloned card).
    #[arg(
        long,
        env = "HUB_SEQUENCE_GAP_WINDOW",
        default_value_t = 16,
        global = true
    )]
    pub sequence_gap_window: u32,
    /// A card that paid at another location less than this many seconds before (at most a day) flags
    /// the payment DISTANT_TERMINALS.
    #[arg(
        long,
        env = "HUB_DISTANT_TERMINAL_SECS",
        default_value_t = 900,
        global = true
    )]
    pub distant_terminal_secs: i64,
}

impl Default for PaymentLimits {
    fn default() -> Self {
        Self {
            contactless_limit_minor: 5_000,
            card_velocity_count: 10,
            card_velocity_sum_minor: 20_000,
            card_velocity_terminals: 3,
            device_cap_minor: 1_000_000,
            offline_floor_minor: 2_500,
            tap_deadline_secs: 120,
            offline_grace_secs: 900,
            sequence_gap_window: 16,
            distant_terminal_secs: 900,
        }
    }
}

/// Guard rails on every GraphQL request.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HUB_MAX_BODY_BYTES", default_value_t = 256 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Deepest accepted selection nesting.
    #[arg(long, env = "HUB_MAX_QUERY_DEPTH", default_value_t = 12, global = true)]
    pub max_query_depth: usize,
    /// Highest accepted query complexity (each field counts 1, list fields by their page size).
    #[arg(
        long,
        env = "HUB_MAX_QUERY_COMPLEXITY",
        default_value_t = 2_000,
        global = true
    )]
    pub max_query_complexity: usize,
    /// Most a document may cost before validation runs: every selection (field, fragment spread,
    /// inline fragment), argument, directive and variable counts one, with fragment spreads expanded,
    /// summed over operations and fragment definitions. Validation costs grow with that expansion,
    /// which nested fragments make exponential in the size of the text.
    #[arg(
        long,
        env = "HUB_MAX_QUERY_SELECTIONS",
        default_value_t = 20_000,
        global = true
    )]
    pub max_query_selections: usize,
    /// Time a GraphQL request may take before it is answered with TIMEOUT, in seconds.
    #[arg(
        long,
        env = "HUB_REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub request_timeout_secs: u64,
    /// Serve schema introspection (turn off in production if partners get the SDL otherwise).
    #[arg(long, env = "HUB_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_query_depth: 12,
            max_query_complexity: 2_000,
            max_query_selections: 20_000,
            request_timeout_secs: 30,
            introspection: true,
        }
    }
}

impl Limits {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// Live subscriptions over WebSocket.
#[derive(Debug, Clone, Args)]
pub struct SubscriptionLimits {
    /// Events buffered per organization for its subscribers on this replica; a subscriber further
    /// behind is ended with SLOW_CONSUMER and its cursor.
    #[arg(
        long,
        env = "HUB_SUBSCRIPTION_BUFFER",
        default_value_t = 1024,
        global = true
    )]
    pub subscription_buffer: usize,
    /// Open subscriptions allowed on one WebSocket connection.
    #[arg(
        long,
        env = "HUB_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 32,
        global = true
    )]
    pub max_subscriptions_per_connection: usize,
    /// WebSocket connections allowed per organization on one replica.
    #[arg(
        long,
        env = "HUB_MAX_CONNECTIONS_PER_ORGANIZATION",
        default_value_t = 2000,
        global = true
    )]
    pub max_connections_per_organization: usize,
    /// WebSocket connections allowed per member or device on one replica (so that one member cannot
    /// use up what its organization's terminals need).
    #[arg(
        long,
        env = "HUB_MAX_CONNECTIONS_PER_CALLER",
        default_value_t = 50,
        global = true
    )]
    pub max_connections_per_caller: usize,
    /// How often an open connection's token, member or device is checked again, in milliseconds
    /// (a connection also ends at its token's expiry, to the second).
    #[arg(
        long,
        env = "HUB_SUBSCRIPTION_RECHECK_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub subscription_recheck_ms: u64,
    /// How often the event feed reads the table when no wake-up arrives, in milliseconds (the bound on
    /// delivery latency while Redis or LISTEN is down).
    #[arg(long, env = "HUB_FEED_POLL_MS", default_value_t = 1_000, global = true)]
    pub feed_poll_ms: u64,
}

impl Default for SubscriptionLimits {
    fn default() -> Self {
        Self {
            subscription_buffer: 1024,
            max_subscriptions_per_connection: 32,
            max_connections_per_organization: 2000,
            max_connections_per_caller: 50,
            subscription_recheck_ms: 5_000,
            feed_poll_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Embedded (one machine, SQLite, may generate its own keys) or production (PostgreSQL, keys supplied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Production,
}

impl HubConfig {
    /// A configuration with every default, for a given data directory (tests and tools start from it).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: None,
            redis_url: None,
            data_dir: data_dir.into(),
            signing_key_file: None,
            token_audience: "iot-commerce-hub".to_owned(),
            retailer_name: "Retailer".to_owned(),
            max_token_lifetime_secs: crate::auth::MAX_TOKEN_TTL.as_secs(),
            access_cache_ms: crate::auth::ACCESS_CACHE_TTL.as_millis() as u64,
            metrics_listen: None,
            metrics_token: None,
            log_format: LogFormat::Text,
            limits: Limits::default(),
            number_hash_key_file: None,
            master_key_file: None,
            audit_key_file: None,
            encryption: EncryptionSettings::default(),
            payment_limits: PaymentLimits::default(),
            clearing: ClearingSettings::default(),
            subscriptions: SubscriptionLimits::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        match &self.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Mode::Production
            }
            _ => Mode::Embedded,
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("hub.db").display()
            ),
        }
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing-key.pem"))
    }

    pub fn number_hash_key_path(&self) -> PathBuf {
        self.number_hash_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("number-hash.key"))
    }

    pub fn audit_key_path(&self) -> PathBuf {
        self.audit_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.key"))
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The hub's identity in card signatures: the same for every replica of one deployment.
    pub fn hub_instance_id(&self) -> card_protocol::HubInstanceId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("ICH/hub-instance/v1/{}", self.token_audience));
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        card_protocol::HubInstanceId::from_bytes(id)
    }

    pub fn max_token_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_token_lifetime_secs)
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// One log line describing the configuration, with credentials masked.
    pub fn describe(&self) -> String {
        format!(
            "mode={:?} database={} redis={} data_dir={} signing_key={} audit_key={} master_key={} audience={} \
             max_token_lifetime={}s access_cache={}ms metrics_listen={} metrics_token={} max_body_bytes={} \
             max_depth={} max_complexity={} max_selections={} timeout={}s introspection={}",
            self.mode(),
            mask_url_credentials(&self.database_url()),
            self.redis_url
                .as_deref()
                .map(mask_url_credentials)
                .unwrap_or_else(|| "none".into()),
            self.data_dir.display(),
            self.signing_key_path().display(),
            self.audit_key_path().display(),
            match &self.master_key_file {
                None if std::env::var_os("HUB_MASTER_KEY").is_some() =>
                    "HUB_MASTER_KEY (***)".to_owned(),
                _ => self.master_key_path().display().to_string(),
            },
            self.token_audience,
            self.max_token_lifetime_secs,
            self.access_cache_ms,
            self.metrics_listen
                .map_or_else(|| "none".to_owned(), |addr| addr.to_string()),
            if self.metrics_token.is_some() {
                "***"
            } else {
                "none"
            },
            self.limits.max_body_bytes,
            self.limits.max_query_depth,
            self.limits.max_query_complexity,
            self.limits.max_query_selections,
            self.limits.request_timeout_secs,
            self.limits.introspection,
        )
    }
}

/// A metrics token long enough not to be guessed.
fn metrics_token(value: &str) -> Result<String, String> {
    if value.trim().chars().count() < 16 {
        return Err("must be at least 16 characters".into());
    }
    Ok(value.trim().to_owned())
}

/// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`; URLs without a password are unchanged.
pub fn mask_url_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The listen address, separate from [`HubConfig`] because only `serve` binds a socket.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "HUB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::mask_url_credentials;

    #[test]
    fn masks_only_the_password() {
        assert_eq!(
            mask_url_credentials("postgres://u:p@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(mask_url_credentials("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(
            mask_url_credentials("sqlite://data/hub.db"),
            "sqlite://data/hub.db"
        );
    }
}
