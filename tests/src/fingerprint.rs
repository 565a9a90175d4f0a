//! Row counts and content checksums of every table: the proof that a refused request changed nothing.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// table -> (row count, SHA-256 over the sorted rows' text)
    pub tables: BTreeMap<String, (i64, String)>,
}

impl Fingerprint {
    pub async fn take(db: &DatabaseConnection) -> Self {
        let backend = db.get_database_backend();
        let mut tables = BTreeMap::new();
        for table in table_names(db).await {
            let rows = row_texts(db, backend, &table).await;
            let mut hasher = Sha256::new();
            for row in &rows {
                hasher.update(row.as_bytes());
                hasher.update(b"\n");
            }
            let digest = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>();
            tables.insert(table, (rows.len() as i64, digest));
        }
        assert!(!tables.is_empty(), "the fingerprint found no tables");
        Self { tables }
    }

    pub fn rows(&self, table: &str) -> i64 {
        self.tables
            .get(table)
            .map(|(count, _)| *count)
            .unwrap_or_default()
    }
}

async fn table_names(db: &DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
        }
        _ => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("list tables");
    rows.iter()
        .map(|row| row.try_get::<String>("", "name").expect("table name"))
        .collect()
}

/// Every row of `table` as text, sorted, so the digest does not depend on physical order.
async fn row_texts(db: &DatabaseConnection, backend: DbBackend, table: &str) -> Vec<String> {
    let sql = match backend {
        DbBackend::Postgres => format!("SELECT t::text AS row FROM \"{table}\" t"),
        _ => {
            let columns = db
                .query_all_raw(Statement::from_string(
                    backend,
                    format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
                ))
                .await
                .expect("list columns");
            let quoted: Vec<String> = columns
                .iter()
                .map(|c| {
                    format!(
                        "quote(\"{}\")",
                        c.try_get::<String>("", "name").expect("column")
                    )
                })
                .collect();
            format!(
                "SELECT {} AS row FROM \"{table}\"",
                quoted.join(" || ',' || ")
            )
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .expect("read table");
    let mut texts: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("", "row").expect("row text"))
        .collect();
    texts.sort();
    texts
}

/// Waits (at most 30 s) until no committed event lacks its position, no audit entry its link and no
/// sales contribution its fold (all done after commit, in the background, and would otherwise show up
/// as changes).
pub(crate) async fn wait_for_stamping(db: &DatabaseConnection) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT (SELECT COUNT(*) FROM event WHERE position IS NULL) \
                 + (SELECT COUNT(*) FROM audit_entry WHERE chain_index IS NULL) \
                 + (SELECT COUNT(*) FROM sales_pending) AS pending",
            ))
            .await
            .expect("count unstamped events");
        let pending: i64 = row
            .and_then(|row| row.try_get("", "pending").ok())
            .unwrap_or(0);
        if pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events, audit entries or sales contributions stayed unprocessed for 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
