//! `rfm report`: the batch job. Scores every customer, writes them to Parquet
//! and prints where the customers and the revenue sit by segment.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::listing::ListingTable;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion_rfm::options::Options;
use datafusion_rfm::pipeline::{
    PIPELINE_KEYS, PipelineSpec, customer_scores_counted, scan_table,
};

use super::args::{OfferArgs, OutputFormat, ReportArgs, ScoringArgs};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::logical_expr::{Expr, cast, col, lit};
use datafusion_rfm::pipeline::OUTPUT_COLUMNS;

use super::args::BadRows;
use super::bad_rows;
use super::output::{Staged, Target, emit, write_parquet};
use super::progress::Progress;
use super::summary::SegmentSummary;
use super::tables::{read_options, register, register_with};
use super::{CliError, CliResult, new_context, say};

/// The name the input is registered under.
const INPUT: &str = "transactions";

/// The name the products are registered under.
const PRODUCTS: &str = "products";

pub async fn run(args: ReportArgs) -> CliResult {
    super::sql::refuse_overwrite(&args.output, INPUT, &args.input)?;
    let storage = read_options(&args.read)?.storage;
    let ctx = new_context(&args.run)?;
    let mut read = read_options(&args.read)?;
    register_with(&ctx, INPUT, &args.input, &read).await?;
    // Skipping bad rows reads the checked columns as text, and needs the
    // types inference found to parse them back.
    let inferred = match args.bad_rows {
        BadRows::Fail => None,
        BadRows::Skip => {
            let schema = ctx.table_provider(INPUT).await?.schema();
            read.text_columns = bad_rows::checked_columns(&spec_from(&args.scoring)?);
            ctx.deregister_table(INPUT)?;
            register_with(&ctx, INPUT, &args.input, &read).await?;
            Some(schema)
        }
    };
    let output = Output {
        target: Target::parse(&args.output, &storage)?,
        partition_by: args.partition_by.clone(),
    };
    if output.partition_by.is_empty() {
        check_extension("--output", &args.output, &[".parquet", ".csv"])?;
    }
    if let Some(offers) = &args.offers.offers {
        check_extension("--offers", offers, &[".parquet"])?;
    }
    if !output.partition_by.is_empty() {
        refuse_input_inside(&args.output, &args.input)?;
        super::output::check_replaceable(&output.target, &output.partition_by).await?;
    }
    let offers = match (&args.offers.offers, &args.offers.products) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(CliError::Usage(
                "--offers needs --products PATH (product id and category columns)."
                    .into(),
            ));
        }
        (Some(path), Some(products)) => {
            super::sql::refuse_overwrite(path, INPUT, &args.input)?;
            super::sql::refuse_overwrite(path, PRODUCTS, products)?;
            if path == &args.output {
                return Err(CliError::Usage(
                    "--offers and --output name the same file; give two paths.".into(),
                ));
            }
            for (flag, given) in [
                ("--tz", &args.scoring.tz),
                ("--ts-unit", &args.scoring.ts_unit),
            ] {
                if given.is_some() {
                    return Err(CliError::Usage(format!(
                        "--offers does not take {flag} yet: the offers would date purchases \
                         differently from the customer scores. Convert the date column \
                         first (e.g. with rfm sql), or leave out --offers."
                    )));
                }
            }
            register(&ctx, PRODUCTS, products, &args.read).await?;
            Some((&args.offers, Target::parse(path, &storage)?))
        }
    };
    let skipping = inferred.is_some();
    let ndjson = is_ndjson(&ctx).await;
    let result = run_report(&ctx, INPUT, &args.scoring, &output, offers, inferred).await;
    match result {
        // The NDJSON reader types a column from its values and cannot read a
        // column that mixes strings and numbers, skipping or not.
        Err(CliError::Usage(m) | CliError::Failed(m))
            if ndjson
                && (m.contains("whilst decoding field")
                    || m.contains("must be numeric; got type Utf8")) =>
        {
            Err(CliError::Usage(format!(
                "{} (input '{}'). An NDJSON column must hold one JSON type, and the reader \
                 types it from its values: write amounts and other numbers unquoted, with \
                 no string among them. --bad-rows skip cannot leave such rows out, as the \
                 reader fails before it sees them.",
                m.trim_end_matches('.'),
                args.input
            )))
        }
        Err(CliError::Usage(m))
            if !skipping && m.contains("must be numeric; got type Utf8") =>
        {
            let example =
                first_non_number(&ctx, &args.scoring.amount, &args.scoring.customer)
                    .await
                    .unwrap_or_default();
            Err(CliError::Usage(format!(
                "column '{}' holds text, so some value in it is not a number{example} \
                 (input '{}'). Fix the values, or pass --bad-rows skip to leave such \
                 rows out and count them.",
                args.scoring.amount, args.input
            )))
        }
        // A value the scan or the pipeline cannot parse: say where, and how
        // to go on without the row.
        Err(CliError::Failed(m)) if !skipping && m.contains("pars") => {
            let place = match locate_parse_error(&ctx, &args.input, &read, &m).await {
                Some(place) => place,
                None => format!("input '{}'", args.input),
            };
            Err(CliError::Failed(format!(
                "{m} ({place}). Fix the value, or pass --bad-rows skip to leave such \
                 rows out and count them."
            )))
        }
        other => other,
    }
}

/// Whether the input table reads NDJSON files.
async fn is_ndjson(ctx: &SessionContext) -> bool {
    let Ok(provider) = ctx.table_provider(INPUT).await else {
        return false;
    };
    provider
        .downcast_ref::<ListingTable>()
        .is_some_and(|t| t.options().format.is::<JsonFormat>())
}

/// `: 'VALUE' (customer_id 'ID')` for the first value of a text column
/// that does not read as a number, for an error that points at the row.
async fn first_non_number(
    ctx: &SessionContext,
    column: &str,
    customer: &str,
) -> Option<String> {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let sql = format!(
        "SELECT CAST({c} AS VARCHAR), CAST({k} AS VARCHAR) FROM {INPUT} \
         WHERE {c} IS NOT NULL AND TRY_CAST({c} AS DOUBLE) IS NULL LIMIT 1",
        c = quote(column),
        k = quote(customer),
    );
    let batches = ctx.sql(&sql).await.ok()?.collect().await.ok()?;
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let text = |i: usize| {
        datafusion::arrow::util::display::array_value_to_string(batch.column(i), 0).ok()
    };
    Some(format!(": '{}' ({customer} '{}')", text(0)?, text(1)?))
}

/// The file and column name of a CSV parse error, which DataFusion reports
/// with a column number and no file.
async fn locate_parse_error(
    ctx: &SessionContext,
    input: &str,
    read: &datafusion_rfm::storage::ReadOptions,
    message: &str,
) -> Option<String> {
    let number: usize = message
        .split("for column ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let schema = ctx.table_provider(INPUT).await.ok()?.schema();
    let column = schema.fields().get(number)?.name().clone();
    let file = datafusion_rfm::storage::find_unreadable_file(
        ctx, INPUT, input, read, &schema, &column,
    )
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| input.to_string());
    Some(format!("column '{column}' of file '{file}'"))
}

/// Refuses a file name whose extension names a format the report does not
/// write (a name without an extension is Parquet).
fn check_extension(flag: &str, path: &str, allowed: &[&str]) -> CliResult {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let has_extension = name.trim_start_matches('.').contains('.');
    if has_extension && !allowed.iter().any(|ext| name.ends_with(ext)) {
        return Err(CliError::Usage(format!(
            "{flag} '{path}': the report writes {}; name the file with one of these \
             extensions.",
            allowed.join(" or ")
        )));
    }
    Ok(())
}

/// Refuses a folder output that holds the input, which replacing the folder
/// would delete.
fn refuse_input_inside(output: &str, input: &str) -> CliResult {
    // The folder part of the input, before any glob.
    let base = match input.find(['*', '?', '[']) {
        Some(at) => &input[..input[..at].rfind('/').map_or(0, |i| i + 1)],
        None => input,
    };
    let inside = if datafusion_rfm::storage::is_remote(output) {
        let folder = format!("{}/", output.trim_end_matches('/'));
        base.starts_with(&folder)
            || base.trim_end_matches('/') == output.trim_end_matches('/')
    } else {
        let base = if base.is_empty() { "." } else { base };
        match (
            std::path::Path::new(output).canonicalize(),
            std::path::Path::new(base).canonicalize(),
        ) {
            (Ok(out), Ok(inp)) => inp.starts_with(&out),
            _ => false,
        }
    };
    if inside {
        return Err(CliError::Usage(format!(
            "the input '{input}' is inside the output folder '{output}', which the \
             report replaces. Write the output elsewhere."
        )));
    }
    Ok(())
}

/// Where the customers go: one file, or a folder partitioned by columns.
pub struct Output {
    pub target: Target,
    pub partition_by: Vec<String>,
}

/// The pipeline spec the flags describe.
fn spec_from(args: &ScoringArgs) -> CliResult<PipelineSpec> {
    let text = args.as_of.trim();
    let shape_ok = text.len() == 10
        && text.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    let as_of = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| shape_ok)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--as-of must be a date as YYYY-MM-DD, e.g. 2024-06-01; got '{}'.",
                args.as_of
            ))
        })?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let as_of = (as_of - epoch).num_days() as i32;
    let mut pairs: Vec<(&'static str, String)> = Vec::new();
    let flags = [
        ("order_id", args.order_id.clone()),
        ("ts_format", args.ts_format.clone()),
        ("ts_unit", args.ts_unit.clone()),
        ("tz", args.tz.clone()),
        ("bins", args.bins.map(|b| b.to_string())),
        ("method", args.method.clone()),
        ("map", args.map.clone()),
        ("preset", args.preset.clone()),
    ];
    pairs.extend(flags.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    if let Some(cuts) = &args.cuts {
        let parsed = Options::parse("rfm report", cuts, &["r_cuts", "f_cuts", "m_cuts"])?;
        for key in ["r_cuts", "f_cuts", "m_cuts"] {
            if let Some(v) = parsed.get(key) {
                pairs.push((key, v.to_string()));
            }
        }
    }
    let options = Options::from_pairs("rfm report", pairs, &PIPELINE_KEYS)?;
    let columns = [
        args.customer.as_str(),
        args.ts.as_str(),
        args.amount.as_str(),
    ];
    Ok(PipelineSpec::new("rfm report", columns, as_of, &options)?)
}

/// Scores the customers of table `input`, writes them to `output` and prints
/// the summary.
pub async fn run_report(
    ctx: &SessionContext,
    input: &str,
    scoring: &ScoringArgs,
    output: &Output,
    offers: Option<(&OfferArgs, Target)>,
    skip_bad_rows: Option<SchemaRef>,
) -> CliResult {
    for (i, column) in output.partition_by.iter().enumerate() {
        if output.partition_by[..i].contains(column) {
            return Err(CliError::Usage(format!(
                "--partition-by names '{column}' twice; name each column once."
            )));
        }
        if !OUTPUT_COLUMNS.contains(&column.as_str()) {
            return Err(CliError::Usage(format!(
                "--partition-by: '{column}' is not an output column; use one of {}.",
                OUTPUT_COLUMNS.join(", ")
            )));
        }
    }
    let mut spec = spec_from(scoring)?;
    let provider = ctx.table_provider(input).await?;
    let mut scan = scan_table(input, provider)?;
    let mut offers_input = input.to_string();
    let bad_counts = match &skip_bad_rows {
        None => None,
        Some(inferred) => {
            let marked = bad_rows::mark_bad_rows(scan, &mut spec, inferred)?;
            scan = bad_rows::good_rows(marked.clone())?;
            offers_input = format!("{input}_readable");
            let view = datafusion::catalog::view::ViewTable::new(scan.clone(), None);
            ctx.register_table(offers_input.as_str(), Arc::new(view))?;
            Some(bad_rows::bad_row_counts(marked)?)
        }
    };
    let (plan, counts) = customer_scores_counted(scan, &spec)?;

    let progress = Progress::start("scoring customers");
    let stream = ctx
        .execute_logical_plan(plan)
        .await?
        .execute_stream()
        .await?;
    // The rows go to one staged file first: the summary reads it, and a
    // partitioned output is split from it.
    let single = match output.partition_by.is_empty() {
        true => output.target.clone(),
        false => Target::Local(std::env::temp_dir().join("customers.parquet")),
    };
    let mut sums = SegmentSummary::default();
    let (written, customers) = write_parquet(stream, &single, |batch, rows| {
        progress.rows(rows);
        Ok(sums.add(batch)?)
    })
    .await?;
    let bad_counts = match bad_counts {
        Some(plan) => ctx.execute_logical_plan(plan).await?.collect().await?,
        None => Vec::new(),
    };
    let offers_written = match &offers {
        Some((args, target)) => {
            progress.phase("finding offers");
            let sql = offers_sql(&offers_input, scoring, args, skip_bad_rows.is_none());
            let stream = ctx.sql(&sql).await?.execute_stream().await?;
            let on_batch = |_: &RecordBatch, rows| {
                progress.rows(rows);
                Ok(())
            };
            Some(write_parquet(stream, target, on_batch).await?)
        }
        None => None,
    };
    drop(progress);

    let (mut rows, null_customers) = (counts.rows() as i64, counts.null_keys() as i64);
    let mut bad = Vec::new();
    for batch in &bad_counts {
        let (names, counts) = (batch.column(0).as_string::<i32>(), batch.column(1));
        let counts = counts.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            bad.push(format!("{} in column {}", counts.value(i), names.value(i)));
            rows += counts.value(i);
        }
    }

    // The written files keep their temporary names until everything else
    // that can fail has run, so a failure leaves the previous output in place.
    let summary_ctx = SessionContext::new();
    let (schema, batches) = sums.table().await?;
    let offer_summary = match &offers_written {
        Some((file, _)) => Some(summarize_offers(&summary_ctx, file).await?),
        None => None,
    };
    let csv = output
        .target
        .display()
        .to_ascii_lowercase()
        .ends_with(".csv");
    if !output.partition_by.is_empty() || csv {
        // CSV and partitioned outputs are made from the staged Parquet file.
        let temp = written.temp_path().to_string_lossy().into_owned();
        let read = ParquetReadOptions::default().file_extension("");
        summary_ctx
            .register_parquet("customers", &temp, read)
            .await?;
    }
    if output.partition_by.is_empty() && !csv {
        written.commit().await?;
    } else if output.partition_by.is_empty() {
        export_csv(&summary_ctx, &output.target)
            .await?
            .commit()
            .await?;
    } else {
        split_into_partitions(&summary_ctx, &output.target, &output.partition_by, csv)
            .await?
            .commit()
            .await?;
    }
    if let Some((file, _)) = offers_written {
        file.commit().await?;
    }

    say(&format!(
        "RFM report as of {}: {rows} input rows, {customers} customers written to {}",
        scoring.as_of.trim(),
        output.target.display()
    ))?;
    say(&format!(
        "Rows left out: {null_customers} with a NULL customer id, {} dated after the as-of \
         date, {} with a NULL date, amount or order id. Customers with no purchase up to \
         the as-of date (only returns or only later rows; no scores): {}.",
        sums.rows_after_as_of, sums.rows_with_null, sums.no_purchase
    ))?;
    if skip_bad_rows.is_some() {
        let total: i64 = bad_counts
            .iter()
            .map(|b| {
                let c = b.column(1).as_primitive::<Int64Type>();
                c.iter().flatten().sum::<i64>()
            })
            .sum();
        say(&format!(
            "Rows skipped because a value does not parse (--bad-rows skip): {total}{}.",
            if bad.is_empty() {
                String::new()
            } else {
                format!(" ({})", bad.join(", "))
            }
        ))?;
    }
    let dated = counts.rows() as i64 - null_customers - sums.rows_with_null;
    if dated > 0 && sums.rows_after_as_of == dated {
        eprintln!(
            "rfm: warning: every dated row is after the as-of date {}; check --as-of, \
             and --ts-unit or --ts-format for the date column.",
            scoring.as_of.trim()
        );
    }
    emit(&schema, &batches, OutputFormat::Table, None).await?;
    if let (Some((schema, batches)), Some((_, target))) = (offer_summary, offers) {
        say(&format!(
            "Offers per segment, type and tactic, written to {}:",
            target.display()
        ))?;
        emit(&schema, &batches, OutputFormat::Table, None).await?;
    }
    Ok(())
}

/// Splits the staged customers (table `customers` of `ctx`) into a staged
/// folder of Parquet files partitioned by `columns`.
async fn split_into_partitions(
    ctx: &SessionContext,
    target: &Target,
    columns: &[String],
    csv: bool,
) -> CliResult<Staged> {
    let staged = Staged::create_dir(target)?;
    let folder = format!("{}/", staged.temp_path().to_string_lossy());
    let options = DataFrameWriteOptions::new().with_partition_by(columns.to_vec());
    // Folder names are text, and a NULL would not come back as NULL: name it.
    let table = ctx.table("customers").await?;
    let values: Vec<Expr> = table
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let c = col(Column::new_unqualified(f.name()));
            if !columns.contains(f.name()) {
                return c;
            }
            let none = if f.name() == "segment" {
                "(no purchase)"
            } else {
                "__HIVE_DEFAULT_PARTITION__"
            };
            coalesce(vec![cast(c, DataType::Utf8), lit(none)]).alias(f.name())
        })
        .collect();
    let table = table.select(values)?;
    if csv {
        table.write_csv(&folder, options, None).await?;
    } else {
        table.write_parquet(&folder, options, None).await?;
    }
    Ok(staged)
}

/// The staged customers (table `customers` of `ctx`) as a staged CSV file.
async fn export_csv(ctx: &SessionContext, target: &Target) -> CliResult<Staged> {
    let (staged, file) = Staged::create(target)?;
    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(std::io::BufWriter::new(file));
    let mut stream = ctx.table("customers").await?.execute_stream().await?;
    while let Some(batch) = futures::StreamExt::next(&mut stream).await {
        writer
            .write(&batch?)
            .map_err(|e| CliError::Failed(format!("cannot write CSV: {e}")))?;
    }
    let mut inner = writer.into_inner();
    std::io::Write::flush(&mut inner)?;
    Ok(staged)
}

/// The `next_best_offer` query the report's flags describe.
fn offers_sql(
    input: &str,
    scoring: &ScoringArgs,
    args: &OfferArgs,
    parse_dates: bool,
) -> String {
    let mut options = vec![
        format!("customer={}", scoring.customer),
        format!("ts={}", scoring.ts),
        format!("amount={}", scoring.amount),
        format!("product={}", args.product),
        format!("category={}", args.category),
        format!("k={}", args.k),
    ];
    let optional = [
        ("basket", &scoring.order_id),
        (
            "ts_format",
            if parse_dates {
                &scoring.ts_format
            } else {
                &None
            },
        ),
        ("price", &args.price),
        ("quantity", &args.quantity),
        ("method", &scoring.method),
        ("map", &scoring.map),
        ("preset", &scoring.preset),
    ];
    options.extend(
        optional
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))),
    );
    options.extend(scoring.bins.map(|b| format!("bins={b}")));
    // Already checked by the scoring: `r_cuts=..., f_cuts=..., m_cuts=...`.
    options.extend(scoring.cuts.clone());
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    format!(
        "SELECT * FROM next_best_offer({}, {}, {}, {})",
        quote(input),
        quote(PRODUCTS),
        quote(scoring.as_of.trim()),
        quote(&options.join(", "))
    )
}

/// Offers per segment, offer type and tactic, read from the written file.
async fn summarize_offers(
    ctx: &SessionContext,
    file: &super::output::AtomicFile,
) -> CliResult<(SchemaRef, Vec<RecordBatch>)> {
    let temp = file.temp_path().to_string_lossy().into_owned();
    let read = ParquetReadOptions::default().file_extension("");
    ctx.register_parquet("offers", &temp, read).await?;
    let df = ctx
        .sql(
            "SELECT coalesce(segment, '(no purchase)') AS segment, tier, offer_type, tactic, \
                    count(DISTINCT customer_id) AS customers, count(*) AS offers, \
                    round(avg(score), 4) AS mean_score \
             FROM offers GROUP BY 1, 2, 3, 4 ORDER BY offers DESC, 1, 3, 4",
        )
        .await?;
    let schema: SchemaRef = df.schema().as_arrow().clone().into();
    Ok((schema, df.collect().await?))
}
