//! Runs the SQL behaviour spec in `sql/spec/*.slt` against a DataFusion session
//! with every function of this crate registered.
//!
//! The session also holds the real-data samples shipped in `data/` as tables
//! `cdnow` (CDNOW purchase log), `grocery` and `products` (Complete Journey
//! subset), so spec files can check results on messy real data. It runs with
//! several partitions so aggregate state merging is exercised.
//!
//! `cargo test --test sqllogictests [FILTER]` runs the files whose name
//! contains FILTER.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use sqllogictest::{DBOutput, DefaultColumnType};

struct Db {
    ctx: SessionContext,
}

impl Db {
    async fn new() -> Result<Self, DataFusionError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(4)
            .with_batch_size(1024);
        let ctx = SessionContext::new_with_config(config);
        datafusion_rfm::register_all(&ctx)?;
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        for (name, file) in [
            ("cdnow", "cdnow/cdnow_master.parquet"),
            ("grocery", "completejourney/transactions.parquet"),
            ("products", "completejourney/products.parquet"),
        ] {
            let path = data.join(file);
            ctx.register_parquet(
                name,
                path.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await?;
        }
        Ok(Self { ctx })
    }
}

fn render(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DataFusionError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let text = f.value(row).to_string();
                        if text.is_empty() {
                            "(empty)".to_string()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(
        &mut self,
        sql: &str,
    ) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let df = self.ctx.sql(sql).await?;
        let columns = df.schema().fields().len();
        let batches = df.collect().await?;
        if columns == 0 {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows: render(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "datafusion-rfm"
    }
}

fn spec_files(filter: Option<&str>) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/spec");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "slt"));
    files.retain(|p| filter.is_none_or(|f| p.to_string_lossy().contains(f)));
    files.sort();
    files
}

fn main() -> ExitCode {
    // cargo passes libtest flags (e.g. --quiet); the first free word filters.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let files = spec_files(filter.as_deref());
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = runtime.block_on(async {
            let mut runner = sqllogictest::Runner::new(Db::new);
            runner.run_file_async(file).await
        });
        match result {
            Ok(()) => {
                passed += 1;
                println!("slt {name} ... ok");
            }
            Err(e) => {
                failed += 1;
                println!("slt {name} ... FAILED\n{}", e.display(false));
            }
        }
    }
    println!("slt: {passed} passed, {failed} failed");
    if failed > 0 || files.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
