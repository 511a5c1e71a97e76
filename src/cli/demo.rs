//! `rfm demo`: the report on the CDNOW purchase log embedded in the binary.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatchReader;
use datafusion::catalog::MemTable;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::args::{DemoArgs, ScoringArgs};
use super::output::Target;
use super::report::{Output, run_report};
use super::{CliError, CliResult, new_context, say};

/// The CDNOW master log (Fader & Hardie; 69,659 purchase days of 23,570
/// customers, 1997-01 to 1998-06) as Parquet: customer_id, order_date,
/// cds, amount.
const CDNOW: &[u8] = include_bytes!("../../data/cdnow/cdnow_master.parquet");

pub async fn run(args: DemoArgs) -> CliResult {
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from_static(CDNOW))
            .and_then(|b| b.build())
            .map_err(|e| CliError::Failed(format!("embedded sample unreadable: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Failed(format!("embedded sample unreadable: {e}")))?;
    let ctx = new_context(&Default::default())?;
    ctx.register_table("cdnow", Arc::new(MemTable::try_new(schema, vec![batches])?))?;

    let output = args
        .output
        .unwrap_or_else(|| std::env::temp_dir().join("rfm-demo-customers.parquet"));
    let scoring = ScoringArgs {
        as_of: "1998-07-01".into(),
        customer: "customer_id".into(),
        ts: "order_date".into(),
        ts_format: None,
        ts_unit: None,
        tz: None,
        amount: "amount".into(),
        order_id: None,
        bins: None,
        method: None,
        cuts: None,
        map: None,
        preset: None,
    };
    say("Demo: the CDNOW purchase log, scored as of 1998-07-01 (rfm report --help).")?;
    let output = Output {
        target: Target::Local(output),
        partition_by: Vec::new(),
    };
    run_report(&ctx, "cdnow", &scoring, &output, None, None).await
}
