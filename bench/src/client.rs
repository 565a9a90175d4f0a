//! A minimal GraphQL client for the benchmark.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Hub {
    http: reqwest::Client,
    endpoint: String,
    token: String,
}

impl Hub {
    pub fn new(base_url: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            endpoint: format!("{}/graphql", base_url.trim_end_matches('/')),
            token: token.to_owned(),
        })
    }

    /// The same hub, authenticated with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// Sends one operation; any GraphQL error is an error here.
    pub async fn graphql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(&self.endpoint)
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .context("request failed")?;
        let body: Value = response.json().await.context("response is not JSON")?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body.get("data").cloned().unwrap_or(Value::Null))
    }
}

/// A token of `organization`'s ADMIN, minted with the hub's own command line (`hub token create`; the
/// hub's DATABASE_URL and HUB_SIGNING_KEY_FILE, or its embedded data directory, must be where it looks).
pub fn mint_token(organization: &str, hub_bin: &std::path::Path) -> anyhow::Result<String> {
    let output = std::process::Command::new(hub_bin)
        .args(["token", "create", "--org", organization, "--role", "ADMIN"])
        .output()
        .with_context(|| format!("running {}", hub_bin.display()))?;
    if !output.status.success() {
        bail!(
            "hub token create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}
