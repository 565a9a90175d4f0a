//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server comes from `HUB_TEST_POSTGRES_URL` (default: the local server as user postgres). Databases
//! are named `hubtest_<run>_<random>`; `scripts/test.sh` sets the run id and drops every database of its
//! run at the end, so a test that panics before `stop()` leaves nothing behind either.

use sea_orm::{ConnectionTrait, Database};
use uuid::Uuid;

pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

fn admin_url() -> String {
    std::env::var("HUB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Replaces the database name (the last path segment) of a PostgreSQL URL.
fn with_database(url: &str, database: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match without_query.rsplit_once('/') {
        Some((prefix, _))
            if prefix.contains("://") && prefix.len() > prefix.find("://").unwrap_or(0) + 3 =>
        {
            prefix
        }
        _ => without_query,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let run = std::env::var("HUB_TEST_RUN_ID").unwrap_or_else(|_| "local".to_owned());
        let name = format!(
            "hubtest_{run}_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = Database::connect(&admin_url).await.unwrap_or_else(|err| {
            panic!("PostgreSQL is required for this test and is unreachable at {admin_url}: {err}")
        });
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn drop_database(self) {
        if let Ok(admin) = Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .await;
            admin.close().await.ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
