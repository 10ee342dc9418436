//! Pre-added usage for the console's unfiltered views, kept by the compaction in the same
//! transaction as the hourly rows (so they always hold exactly the compacted calls):
//! - `usage_quarters`: quarter-hour × outcome, every sum and histogram (the charts);
//! - `usage_model_blocks`: block × model × endpoint × outcome, every sum (the per-model and
//!   per-endpoint tables);
//! - `usage_key_blocks`: block × workspace × key × outcome, the counts (top keys and
//!   workspaces).
//!
//! A block of level L covers 2^L units of 6 hours (L = 0..6: 6 h to 16 days) aligned on
//! multiples of its size since 1970-01-01: any run of whole units is a handful of blocks, so 30
//! days of 10,000 keys is read as a few block rows per key instead of one row per key and hour.
//! Ids that may be absent
//! (refused calls) are 0 here, not NULL: NULLs are distinct in a unique index, and the upsert
//! that merges a compaction pass into its blocks needs them to conflict.
//!
//! Also: the minute rows waiting for compaction get a partial index of their own (the few of the
//! last hour among days of compacted ones: a planner reading the flag's statistics sees half
//! and half, and scanned days of rows for every pending query), replacing (compacted, minute).
//!
//! Filled here from the hourly rows already compacted. Quarters of those hours get the hour's
//! whole usage in its first quarter: charts of an hour and longer buckets are exact, a 24-hour
//! chart drawn right after the upgrade shows the hours compacted before it at hour resolution.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

const BUCKETS: usize = 14;
/// Block levels: 6 h × 1, 2, 4 … 64.
const LEVELS: u32 = 7;
const UNIT_HOURS: i64 = 6;

fn counts() -> Vec<String> {
    ["requests", "failovers", "usage_known", "input_tokens", "output_tokens", "total_tokens"].into_iter().map(str::to_owned).collect()
}

fn sums() -> Vec<String> {
    let mut c = counts();
    c.extend(["latency_ms_sum".to_owned(), "ttfb_ms_sum".to_owned()]);
    c.extend((0..BUCKETS).map(|i| format!("lat_b{i}")));
    c.extend((0..BUCKETS).map(|i| format!("ttfb_b{i}")));
    c
}

/// A table of `keys` (the unique key, in order) and zero-defaulted bigint `values`.
fn table(name: &str, keys: &[(&str, ColumnType)], values: &[String]) -> TableCreateStatement {
    let mut t = Table::create().table(Alias::new(name)).to_owned();
    let mut pk = Index::create();
    for (k, ty) in keys {
        t.col(ColumnDef::new_with_type(Alias::new(*k), ty.clone()).not_null());
        pk.col(Alias::new(*k));
    }
    for v in values {
        t.col(ColumnDef::new(Alias::new(v)).big_integer().not_null().default(0));
    }
    t.primary_key(&mut pk);
    t
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let text = |n: u32| ColumnType::String(StringLen::N(n));
        m.create_table(table("usage_quarters", &[("quarter", ColumnType::BigInteger), ("outcome", text(24))], &sums())).await?;
        m.create_table(
            table(
                "usage_model_blocks",
                &[
                    ("level", ColumnType::Integer),
                    ("block", ColumnType::BigInteger),
                    ("maas_model_id", ColumnType::BigInteger),
                    ("model", text(128)),
                    ("endpoint_id", ColumnType::BigInteger),
                    ("outcome", text(24)),
                ],
                &sums(),
            )
            .to_owned(),
        )
        .await?;
        m.create_table(
            table(
                "usage_key_blocks",
                &[
                    ("level", ColumnType::Integer),
                    ("block", ColumnType::BigInteger),
                    ("api_key_id", ColumnType::BigInteger),
                    ("workspace_id", ColumnType::BigInteger),
                    ("outcome", text(24)),
                ],
                &counts(),
            )
            .to_owned(),
        )
        .await?;

        let db = m.get_connection();
        let backend = db.get_database_backend();
        let summed = |cols: &[String]| cols.iter().map(|c| format!("SUM({c})")).collect::<Vec<_>>().join(", ");
        let mut fill = vec![format!(
            "INSERT INTO usage_quarters (quarter, outcome, {}) SELECT hour * 4, outcome, {} FROM usage_hours GROUP BY hour, outcome",
            sums().join(", "),
            summed(&sums())
        )];
        for level in 0..LEVELS {
            let hours = UNIT_HOURS << level;
            fill.push(format!(
                "INSERT INTO usage_model_blocks (level, block, maas_model_id, model, endpoint_id, outcome, {}) SELECT {level}, hour / {hours}, COALESCE(maas_model_id, 0), model, COALESCE(endpoint_id, 0), outcome, {} FROM usage_hours GROUP BY hour / {hours}, COALESCE(maas_model_id, 0), model, COALESCE(endpoint_id, 0), outcome",
                sums().join(", "),
                summed(&sums())
            ));
            fill.push(format!(
                "INSERT INTO usage_key_blocks (level, block, api_key_id, workspace_id, outcome, {}) SELECT {level}, hour / {hours}, COALESCE(api_key_id, 0), COALESCE(workspace_id, 0), outcome, {} FROM usage_hours GROUP BY hour / {hours}, COALESCE(api_key_id, 0), COALESCE(workspace_id, 0), outcome",
                counts().join(", "),
                summed(&counts())
            ));
        }
        fill.push("CREATE INDEX idx_usage_pending_minute ON usage_minutes (minute) WHERE compacted = FALSE".into());
        fill.push("DROP INDEX idx_usage_compacted_minute".into());
        for sql in fill {
            db.execute_raw(Statement::from_string(backend, sql)).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for sql in ["CREATE INDEX idx_usage_compacted_minute ON usage_minutes (compacted, minute)", "DROP INDEX idx_usage_pending_minute"] {
            db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
        }
        for t in ["usage_key_blocks", "usage_model_blocks", "usage_quarters"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}
