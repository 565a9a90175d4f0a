//! The writes of one step of a transaction, sent together.
//!
//! On PostgreSQL they go as one statement: each write is a data-modifying common table expression
//! returning a row per row it touched, and the statement answers with the counts. A payment's ten
//! writes then cost the database one round trip and one parse instead of ten. Elsewhere (SQLite, in
//! process, where a statement costs no round trip) they run one after another in the same
//! transaction. Either way every write reports how many rows it touched and the caller decides what a
//! count means; a constraint violation fails the whole step with the database's own error (kept as
//! the `DbErr` inside INTERNAL, so `constraints` can name the constraint).
//!
//! On PostgreSQL the writes of one step cannot see each other's rows (one statement, one snapshot);
//! on SQLite they run in order and do. So a step must never hold a write that reads or changes a row
//! another write of the same step wrote (an update of a row inserted in the step would touch it on
//! SQLite and silently not on PostgreSQL). Foreign keys between the writes are fine: PostgreSQL
//! checks them when the statement ends.

use sea_orm::{
    ConnectionTrait, DbBackend,
    sea_query::{
        Alias, Asterisk, CommonTableExpression, Expr, ExprTrait, InsertStatement, Query,
        SelectStatement, SubQueryStatement, UpdateStatement, WithClause,
    },
};

use crate::error::{ApiError, ApiResult};

/// One write of a step, by the order it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteId(usize);

enum Write {
    Insert(InsertStatement),
    Update(UpdateStatement),
}

/// Writes collected for one round trip.
#[derive(Default)]
pub struct Writes {
    writes: Vec<Write>,
    /// Writes that must touch exactly so many rows, and what they do (for the error).
    expected: Vec<(WriteId, u64, &'static str)>,
}

/// How many rows each write of a step touched.
#[derive(Debug)]
pub struct Written(Vec<u64>);

impl Written {
    pub fn rows(&self, write: WriteId) -> u64 {
        self.0.get(write.0).copied().unwrap_or(0)
    }
}

impl Writes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, statement: InsertStatement) -> WriteId {
        self.writes.push(Write::Insert(statement));
        WriteId(self.writes.len() - 1)
    }

    pub fn update(&mut self, statement: UpdateStatement) -> WriteId {
        self.writes.push(Write::Update(statement));
        WriteId(self.writes.len() - 1)
    }

    /// Says that `write` must touch exactly `rows` rows: otherwise the step fails (INTERNAL) and the
    /// transaction rolls back. For writes whose rows the transaction holds locked, so any other count
    /// is a fault, never an outcome.
    pub fn expect(&mut self, write: WriteId, rows: u64, what: &'static str) {
        self.expected.push((write, rows, what));
    }

    /// Runs the writes in `txn` (one statement on PostgreSQL, one per write elsewhere) and checks the
    /// expected counts. A database error keeps its cause (`DbErr`, for `constraints`).
    pub async fn run<C: ConnectionTrait>(self, txn: &C) -> ApiResult<Written> {
        let Self { writes, expected } = self;
        let written = send(writes, txn).await?;
        for (write, rows, what) in expected {
            let touched = written.rows(write);
            if touched != rows {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "{what}: {touched} rows written where {rows} were expected"
                )));
            }
        }
        Ok(written)
    }
}

async fn send<C: ConnectionTrait>(writes: Vec<Write>, txn: &C) -> ApiResult<Written> {
    if writes.is_empty() {
        return Ok(Written(Vec::new()));
    }
    if txn.get_database_backend() != DbBackend::Postgres {
        let mut counts = Vec::with_capacity(writes.len());
        for write in &writes {
            let result = match write {
                Write::Insert(statement) => txn.execute(statement).await?,
                Write::Update(statement) => txn.execute(statement).await?,
            };
            counts.push(result.rows_affected());
        }
        return Ok(Written(counts));
    }
    let names: Vec<String> = (0..writes.len()).map(|n| format!("w{n}")).collect();
    let mut with = WithClause::new();
    let mut answer = Query::select();
    for (write, name) in writes.into_iter().zip(&names) {
        let returning = Query::returning().expr(Expr::val(1));
        let query: SubQueryStatement = match write {
            Write::Insert(mut statement) => statement.returning(returning).to_owned().into(),
            Write::Update(mut statement) => statement.returning(returning).to_owned().into(),
        };
        with.cte(
            CommonTableExpression::new()
                .query(query)
                .table_name(Alias::new(name))
                .to_owned(),
        );
        answer.expr_as(count_of(name), Alias::new(name));
    }
    let row = txn
        .query_one(&with.query(answer))
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a write step returned no row")))?;
    let counts = names
        .iter()
        .map(|name| {
            row.try_get::<i64>("", name)
                .map(|count| u64::try_from(count).unwrap_or(0))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Written(counts))
}

/// `(SELECT count(*) FROM name)`.
fn count_of(name: &str) -> Expr {
    let count: SelectStatement = Query::select()
        .expr(Expr::col(Asterisk).count())
        .from(Alias::new(name))
        .to_owned();
    Expr::SubQuery(None, Box::new(count.into()))
}
