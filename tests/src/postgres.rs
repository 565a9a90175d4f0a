//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server comes from `HUB_TEST_POSTGRES_URL` (default: the local server as user postgres). Databases
//! are named `hubtest_<run>_<random>`; `scripts/test.sh` sets the run id and drops every database of its
//! run at the end, so a test that panics before `stop()` leaves nothing behind either.
//!
//! Within a run (`HUB_TEST_RUN_ID` set), the schema is migrated once into `hubtest_<run>_template_*` and
//! every test database is a copy of it (`CREATE DATABASE ... TEMPLATE`), which is cheaper than
//! migrating each one. Without a run id every database is migrated by the hub that opens it, so a
//! template can never be stale.

use migration::MigratorTrait;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use uuid::Uuid;

/// Key of the session advisory lock under which one test process builds the run's template.
const TEMPLATE_LOCK_KEY: i64 = 0x4943_485f_5450_4c54; // "ICH_TPLT"

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
    /// A database migrated to the current schema (a copy of the run's template).
    pub async fn create() -> Self {
        Self::create_from_template(true).await
    }

    /// A database without any schema (to migrate it step by step, as an upgrade would).
    pub async fn create_empty() -> Self {
        Self::create_from_template(false).await
    }

    async fn create_from_template(from_template: bool) -> Self {
        let admin_url = admin_url();
        let run = std::env::var("HUB_TEST_RUN_ID").ok();
        let name = format!(
            "hubtest_{}_{}",
            run.as_deref().unwrap_or("local"),
            &Uuid::new_v4().simple().to_string()[..12]
        );
        // One connection: the template's session lock must stay on the connection that took it.
        let mut options = ConnectOptions::new(admin_url.clone());
        options.max_connections(1).sqlx_logging(false);
        let admin = Database::connect(options).await.unwrap_or_else(|err| {
            panic!("PostgreSQL is required for this test and is unreachable at {admin_url}: {err}")
        });
        let create = match run.as_ref().filter(|_| from_template) {
            Some(run) => {
                let template = ensure_template(&admin, &admin_url, run).await;
                format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")
            }
            None => format!("CREATE DATABASE \"{name}\""),
        };
        admin
            .execute_unprepared(&create)
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

/// The run's migrated template database, built by the first test process that needs it. Its name
/// carries a digest of the migration list (a run id reused with other migrations gets another one); it
/// is built under another name and renamed when complete, so a process that dies half-way leaves no
/// half-migrated template, and it refuses connections, so nothing can hold it open while it is copied.
async fn ensure_template(admin: &DatabaseConnection, admin_url: &str, run: &str) -> String {
    use sha2::{Digest, Sha256};
    let migrations: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let digest = Sha256::digest(migrations.join(",").as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let template = format!("hubtest_{run}_template_{tag}");
    let building = format!("hubtest_{run}_building_{tag}");
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .await
        .expect("template lock");
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT 1 AS found FROM pg_database WHERE datname = '{template}'"),
        ))
        .await
        .expect("look for the template")
        .is_some();
    if !exists {
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{building}\""),
        ] {
            admin
                .execute_unprepared(&statement)
                .await
                .expect("prepare the template");
        }
        let db = Database::connect(with_database(admin_url, &building))
            .await
            .expect("connect to the template");
        migration::Migrator::up(&db, None)
            .await
            .expect("migrate the template");
        db.close().await.ok();
        for statement in [
            format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\""),
            format!("ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS false"),
        ] {
            admin
                .execute_unprepared(&statement)
                .await
                .expect("finish the template");
        }
    }
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .await
        .expect("template unlock");
    template
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
