//! Registering input files, folders, globs and object-store URLs as tables,
//! through the library's [`datafusion_rfm::storage`].

use datafusion::prelude::SessionContext;
use datafusion_rfm::storage::{CsvOptions, Format, ReadOptions, plain, register_table};

use super::args::{InputFormat, ReadArgs};
use super::{CliError, CliResult};

/// Splits `NAME=PATH`.
pub fn split_spec(spec: &str) -> CliResult<(&str, &str)> {
    match spec.split_once('=') {
        Some((name, path)) if !name.trim().is_empty() && !path.trim().is_empty() => {
            Ok((name.trim(), path.trim()))
        }
        _ => Err(CliError::Usage(format!(
            "--table expects NAME=PATH; got '{spec}'. Example: --table orders=data/orders.parquet"
        ))),
    }
}

/// One ASCII character of a CSV flag.
fn ascii(flag: &str, c: char) -> CliResult<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        CliError::Usage(format!("{flag} must be one ASCII character; got '{c}'."))
    })
}

/// The library's read options from the flags.
pub fn read_options(args: &ReadArgs) -> CliResult<ReadOptions> {
    let storage = args
        .storage_options
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            }
            _ => Err(CliError::Usage(format!(
                "--storage-option expects KEY=VALUE; got '{pair}'. Example: \
                 --storage-option aws_endpoint=http://127.0.0.1:9000"
            ))),
        })
        .collect::<CliResult<Vec<_>>>()?;
    Ok(ReadOptions {
        format: match args.input_format {
            InputFormat::Auto => Format::Auto,
            InputFormat::Parquet => Format::Parquet,
            InputFormat::Csv => Format::Csv,
            InputFormat::Ndjson => Format::Ndjson,
        },
        csv: CsvOptions {
            delimiter: args
                .csv_delimiter
                .map(|c| ascii("--csv-delimiter", c))
                .transpose()?,
            header: !args.csv_no_header,
            quote: ascii("--csv-quote", args.csv_quote)?,
            infer_rows: args.csv_infer_rows,
            null_regex: args.csv_null.clone(),
        },
        storage,
        text_columns: Vec::new(),
    })
}

/// Registers `path` as table `name`; a path that cannot be read is a usage
/// error (exit code 2).
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    options: &ReadArgs,
) -> CliResult {
    register_with(ctx, name, path, &read_options(options)?).await
}

/// [`register`] with the library's options.
pub async fn register_with(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    options: &ReadOptions,
) -> CliResult {
    register_table(ctx, name, path, options)
        .await
        .map_err(|e| CliError::Usage(plain(&e)))?;
    log::debug!("registered table {name} from {path}");
    Ok(())
}
