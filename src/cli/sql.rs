//! `rfm sql`: run SQL over registered tables.

use std::io::{IsTerminal, Read};
use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;

use super::args::{OutputFormat, SqlArgs, TableArgs};
use super::output::{Target, emit};
use super::tables::{register, split_spec};
use super::{CliError, CliResult, new_context};

/// Registers every `--table NAME=PATH` on a new context.
pub async fn context_with_tables(args: &TableArgs) -> CliResult<SessionContext> {
    let ctx = new_context(&args.run)?;
    let mut seen = std::collections::HashMap::new();
    for spec in &args.tables {
        let (name, path) = split_spec(spec)?;
        if let Some(first) = seen.insert(name.to_ascii_lowercase(), path) {
            return Err(CliError::Usage(format!(
                "--table names '{name}' twice ('{first}' and '{path}'); give each \
                 table its own name."
            )));
        }
        register(&ctx, name, path, &args.read).await?;
    }
    Ok(ctx)
}

pub async fn run(args: SqlArgs) -> CliResult {
    let format = output_format(args.format, args.output.as_deref())?;
    let target = match &args.output {
        Some(path) => {
            for spec in &args.tables.tables {
                let (name, input) = split_spec(spec)?;
                refuse_overwrite(path, name, input)?;
            }
            let storage = super::tables::read_options(&args.tables.read)?.storage;
            Some(Target::parse(path, &storage)?)
        }
        None => None,
    };
    let ctx = context_with_tables(&args.tables).await?;
    let text = match (&args.sql, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => read_stdin().await?,
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read SQL file '{}': {e}", path.display()))
        })?,
        (None, None) if std::io::stdin().is_terminal() => {
            return shell(&ctx, format).await;
        }
        (None, None) => read_stdin().await?,
    };
    let results = run_statements(&ctx, &text).await?;
    match (&target, results.last()) {
        (Some(target), Some((schema, batches))) => {
            emit(schema, batches, format, Some(target)).await
        }
        (Some(_), None) => Err(CliError::Usage(
            "no statement to write; the SQL is empty.".into(),
        )),
        (None, _) => {
            for (schema, batches) in &results {
                emit(schema, batches, format, None).await?;
            }
            Ok(())
        }
    }
}

/// The output format: `--format`, else what the `-o` file's extension
/// implies, else a table. A `--format` that contradicts the extension, and an
/// extension the reader knows but the writer does not make (`.tsv`,
/// compressed CSV), are refused rather than written under a misleading name.
fn output_format(
    format: Option<OutputFormat>,
    output: Option<&str>,
) -> Result<OutputFormat, CliError> {
    let lower = output.map(str::to_ascii_lowercase).unwrap_or_default();
    let ext = Path::new(&lower).extension().and_then(|e| e.to_str());
    let implied = match ext {
        Some("parquet") => Some(OutputFormat::Parquet),
        Some("csv") => Some(OutputFormat::Csv),
        Some("json" | "ndjson" | "jsonl") => Some(OutputFormat::Json),
        Some(other @ ("tsv" | "gz" | "zst" | "bz2" | "xz")) => {
            return Err(CliError::Usage(format!(
                "--output '{}': rfm sql does not write .{other} files; write .csv, \
                 .parquet or .json (.ndjson, .jsonl) instead.",
                output.unwrap_or_default()
            )));
        }
        _ => None,
    };
    match (format, implied) {
        (Some(given), Some(implied)) if given != implied => {
            Err(CliError::Usage(format!(
                "--format {} and --output '{}' disagree: the extension means {}. Change \
             one of them.",
                format_name(given),
                output.unwrap_or_default(),
                format_name(implied)
            )))
        }
        (Some(given), _) => Ok(given),
        (None, implied) => Ok(implied.unwrap_or(OutputFormat::Table)),
    }
}

fn format_name(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Table => "table",
        OutputFormat::Csv => "csv",
        OutputFormat::Json => "json",
        OutputFormat::Parquet => "parquet",
    }
}

/// Refuses an output path that is an existing input file, which the run would
/// overwrite with its own result.
pub fn refuse_overwrite(output: &str, name: &str, input: &str) -> CliResult {
    let same = if datafusion_rfm::storage::is_remote(output) {
        let folder = format!("{}/", input.trim_end_matches('/'));
        output == input || output.starts_with(&folder) || glob_matches(input, output)
    } else {
        let absolute = |p: &str| {
            std::path::absolute(p)
                .map_or_else(|_| p.to_string(), |a| a.display().to_string())
        };
        let by_glob = glob_matches(input, output)
            || glob_matches(&absolute(input), &absolute(output))
            || Path::new(output).canonicalize().is_ok_and(|out| {
                glob_matches(&absolute(input), &out.display().to_string())
            });
        by_glob
            || match (
                Path::new(output).canonicalize(),
                Path::new(input).canonicalize(),
            ) {
                (Ok(out), Ok(inp)) => {
                    out == inp || (inp.is_dir() && out.starts_with(&inp))
                }
                _ => false,
            }
    };
    if same {
        return Err(CliError::Usage(format!(
            "the output '{output}' would overwrite the input of table '{name}' \
             ('{input}'). Write to another path."
        )));
    }
    Ok(())
}

/// Whether `input` is a glob that `output` (or a file inside it) matches.
fn glob_matches(input: &str, output: &str) -> bool {
    if !input.contains(['*', '?', '[']) {
        return false;
    }
    let Ok(pattern) = glob::Pattern::new(input) else {
        return false;
    };
    let options = glob::MatchOptions {
        require_literal_separator: false,
        ..Default::default()
    };
    pattern.matches_with(output, options)
        || pattern.matches_with(&format!("{}/x", output.trim_end_matches('/')), options)
}

/// Reads all of stdin off the async threads, so Ctrl-C still stops the run.
async fn read_stdin() -> CliResult<String> {
    let read = tokio::task::spawn_blocking(|| {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    });
    match read.await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(CliError::Usage(format!("cannot read SQL from stdin: {e}"))),
        Err(e) => Err(CliError::Failed(format!("cannot read SQL from stdin: {e}"))),
    }
}

/// Runs each statement of `text` in order and returns the results of those
/// that produce rows.
pub async fn run_statements(
    ctx: &SessionContext,
    text: &str,
) -> CliResult<Vec<(SchemaRef, Vec<RecordBatch>)>> {
    let statements = DFParser::parse_sql(text)
        .map_err(|e| CliError::Usage(format!("cannot parse the SQL: {e}")))?;
    let mut results = Vec::new();
    for statement in statements {
        let plan = ctx.state().statement_to_plan(statement).await?;
        let df = ctx.execute_logical_plan(plan).await?;
        let schema = SchemaRef::from(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        if !schema.fields().is_empty() {
            results.push((schema, batches));
        }
    }
    Ok(results)
}

/// A line-editing shell: statements end with ';', `\q` quits.
async fn shell(ctx: &SessionContext, format: OutputFormat) -> CliResult {
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| CliError::Failed(format!("cannot start the shell: {e}")))?;
    eprintln!(
        "rfm SQL shell: end statements with ';', \\q to quit, SHOW FUNCTIONS to list."
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "rfm> " } else { "...> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(_) => return Ok(()),
        };
        if buffer.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            return Ok(());
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let _ = editor.add_history_entry(buffer.trim());
        match run_statements(ctx, &buffer).await {
            Ok(results) => {
                for (schema, batches) in &results {
                    if let Err(e) = emit(schema, batches, format, None).await {
                        eprintln!("rfm: {e}");
                    }
                }
            }
            Err(e) => eprintln!("rfm: {e}"),
        }
        buffer.clear();
    }
}
