//! Partner tokens this replica verified lately.
//!
//! Checking a token's EdDSA signature was about half of the hub's own CPU for the smallest
//! authenticated query (profiled under `hub-bench`), and a client sends the same token with every
//! request until it expires. So a token whose signature and claims verified is remembered, by its
//! exact text, for at most the access cache's window (`--access-cache-ms`) and never past its `exp`;
//! a hit returns the claims as they were verified. Everything that can change meanwhile (the member,
//! its role, its organization) is still looked up for every request, through the access cache.
//!
//! Only tokens that verified are remembered, so nobody without the hub's signing key can fill the
//! memory; the map is bounded all the same. Device tokens are not remembered: each is verified
//! against the device's current key.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::Utc;

use super::PartnerClaims;

/// At most this many tokens are remembered (a few MB).
const MAX_ENTRIES: usize = 10_000;
/// Longer texts are never looked up or remembered (the hub's tokens are a few hundred bytes): a
/// caller without credentials must not make every request hash its megabytes under the lock.
const MAX_TOKEN_LEN: usize = 2048;

pub struct VerifiedTokens {
    ttl: Duration,
    entries: Mutex<HashMap<String, Verified>>,
}

struct Verified {
    claims: PartnerClaims,
    at: Instant,
}

impl VerifiedTokens {
    /// `ttl` zero remembers nothing.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The claims of `token` if it verified within the window and has not expired since.
    pub fn get(&self, token: &str) -> Option<PartnerClaims> {
        if self.ttl.is_zero() || token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let verified = entries.get(token)?;
        let fresh =
            verified.at.elapsed() < self.ttl && Utc::now().timestamp() < verified.claims.exp;
        fresh.then(|| verified.claims.clone())
    }

    /// Remembers a token that just verified.
    pub fn insert(&self, token: &str, claims: &PartnerClaims) {
        // A token accepted within verification's leeway after `exp` would never be served.
        if self.ttl.is_zero() || token.len() > MAX_TOKEN_LEN || claims.exp <= Utc::now().timestamp()
        {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, verified| verified.at.elapsed() < ttl);
            // Nearly all fresh: start over rather than scan the whole map again at the next insert.
            if entries.len() >= MAX_ENTRIES * 9 / 10 {
                entries.clear();
            }
        }
        entries.insert(
            token.to_owned(),
            Verified {
                claims: claims.clone(),
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use entities::member::MemberRole;
    use uuid::Uuid;

    use super::*;

    fn claims(exp: i64) -> PartnerClaims {
        PartnerClaims {
            iss: "hub".into(),
            aud: "hub".into(),
            sub: Uuid::nil(),
            org: Uuid::nil(),
            role: MemberRole::Admin,
            iat: 0,
            nbf: 0,
            exp,
            jti: Uuid::nil(),
        }
    }

    #[test]
    fn a_token_is_remembered_within_its_window_and_its_lifetime_only() {
        let now = Utc::now().timestamp();
        let tokens = VerifiedTokens::new(Duration::from_secs(60));
        tokens.insert("valid", &claims(now + 600));
        tokens.insert("expired", &claims(now - 1));
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        tokens.insert(&long, &claims(now + 600));
        assert_eq!(tokens.get("valid").map(|c| c.exp), Some(now + 600));
        assert!(tokens.get("expired").is_none(), "never past exp");
        assert!(tokens.get("never verified").is_none());
        assert!(tokens.get(&long).is_none(), "long texts are not remembered");
        assert_eq!(
            tokens
                .entries
                .lock()
                .map(|entries| entries.len())
                .unwrap_or(0),
            1,
            "only the valid token is held"
        );

        let short = VerifiedTokens::new(Duration::from_millis(20));
        short.insert("valid", &claims(now + 600));
        std::thread::sleep(Duration::from_millis(40));
        assert!(short.get("valid").is_none(), "never past the window");

        let off = VerifiedTokens::new(Duration::ZERO);
        off.insert("valid", &claims(now + 600));
        assert!(
            off.get("valid").is_none(),
            "a zero window remembers nothing"
        );
    }

    #[test]
    fn the_map_stays_bounded() {
        let tokens = VerifiedTokens::new(Duration::from_secs(60));
        let exp = Utc::now().timestamp() + 600;
        for n in 0..MAX_ENTRIES + 10 {
            tokens.insert(&format!("token-{n}"), &claims(exp));
        }
        let held = tokens
            .entries
            .lock()
            .map(|entries| entries.len())
            .unwrap_or(0);
        assert!((1..=MAX_ENTRIES).contains(&held), "{held} entries");
        assert!(tokens.get(&format!("token-{}", MAX_ENTRIES + 9)).is_some());
    }
}
