//! The schema the migrations make, compared with a snapshot checked in under `tests/snapshots`, so a
//! change to a migration that alters the resulting tables, columns, indexes or constraints is seen.
//! After an intended change, regenerate with `UPDATE_SCHEMA_SNAPSHOT=1` and review the diff.

use hub_tests::{Backend, TestApp, on_both_backends, workspace_root};
use sea_orm::{ConnectionTrait, Statement};

/// Every row of `sql`, its columns joined by " | ", one line each.
async fn rows(app: &TestApp, sql: &str) -> Vec<String> {
    let db = &app.hub.state.db;
    let backend = db.get_database_backend();
    let result = db
        .query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .expect("schema query");
    result
        .iter()
        .map(|row| {
            row.column_names()
                .iter()
                .map(|name| {
                    row.try_get::<Option<String>>("", name)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "-".to_owned())
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

async fn dump(app: &TestApp) -> String {
    let queries: &[&str] = match app.backend {
        Backend::Postgres => &[
            "SELECT table_name::text, column_name::text, data_type::text, \
             character_maximum_length::text, is_nullable::text, column_default::text, \
             is_generated::text, generation_expression::text \
             FROM information_schema.columns WHERE table_schema = 'public' \
             ORDER BY table_name, column_name",
            "SELECT indexname::text, indexdef::text FROM pg_indexes WHERE schemaname = 'public' \
             ORDER BY indexname",
            "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid)::text \
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
             ORDER BY conrelid::regclass::text, conname",
        ],
        Backend::Sqlite => &["SELECT type, name, tbl_name, sql FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"],
    };
    let mut out = String::new();
    for query in queries {
        for line in rows(app, query).await {
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

async fn schema_matches_the_snapshot(backend: Backend) {
    let app = TestApp::start(backend).await;
    let name = match backend {
        Backend::Postgres => "schema.postgres.txt",
        Backend::Sqlite => "schema.sqlite.txt",
    };
    let path = workspace_root().join("tests/snapshots").join(name);
    let actual = dump(&app).await;
    if std::env::var("UPDATE_SCHEMA_SNAPSHOT").is_ok() {
        std::fs::write(&path, &actual).expect("write the snapshot");
    }
    let expected = std::fs::read_to_string(&path).expect("the snapshot is checked in");
    assert!(
        actual == expected,
        "the migrations make another schema than {}; if intended, regenerate with \
         UPDATE_SCHEMA_SNAPSHOT=1 and review the diff",
        path.display()
    );
    app.stop().await;
}
on_both_backends!(schema_snapshot, schema_matches_the_snapshot);
