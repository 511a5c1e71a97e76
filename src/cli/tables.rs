//! Registering input files, folders and globs as tables.

use std::path::Path;

use datafusion::prelude::{
    CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext,
};

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

/// The format and file extension of `path`: a file's own extension, or that of
/// the first file in a folder.
fn detect(path: &str, format: InputFormat) -> CliResult<(InputFormat, String)> {
    let sample = if Path::new(path).is_dir() {
        first_file(Path::new(path))?
    } else {
        path.to_string()
    };
    let lower = sample.to_ascii_lowercase();
    let ext = [
        ".parquet", ".csv.gz", ".csv.zst", ".csv", ".tsv", ".ndjson", ".jsonl", ".json",
    ]
    .into_iter()
    .find(|e| lower.ends_with(e))
    .unwrap_or("");
    let detected = match ext {
        ".parquet" => InputFormat::Parquet,
        ".csv" | ".tsv" | ".csv.gz" | ".csv.zst" => InputFormat::Csv,
        ".ndjson" | ".jsonl" | ".json" => InputFormat::Ndjson,
        _ => InputFormat::Auto,
    };
    match (format, detected) {
        (InputFormat::Auto, InputFormat::Auto) => Err(CliError::Usage(format!(
            "cannot tell the format of '{path}' from its name. \
             Pass --input-format parquet, csv or ndjson."
        ))),
        (InputFormat::Auto, found) => Ok((found, ext.to_string())),
        (given, _) => Ok((given, ext.to_string())),
    }
}

fn first_file(dir: &Path) -> CliResult<String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .map_err(|e| {
                CliError::Usage(format!("cannot read folder '{}': {e}", d.display()))
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                return Ok(p.to_string_lossy().into_owned());
            }
        }
    }
    Err(CliError::Usage(format!(
        "folder '{}' holds no data files.",
        dir.display()
    )))
}

fn has_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Registers `path` as table `name`.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    options: &ReadArgs,
) -> CliResult {
    if !has_glob(path) && !Path::new(path).exists() {
        return Err(CliError::Usage(format!(
            "table '{name}': '{path}' does not exist. Check the path."
        )));
    }
    let (format, ext) = detect(path, options.input_format)?;
    let unreadable = |e: datafusion::error::DataFusionError| {
        CliError::Usage(format!(
            "table '{name}': cannot read '{path}': {}",
            e.strip_backtrace()
        ))
    };
    match format {
        InputFormat::Parquet | InputFormat::Auto => {
            let read = ParquetReadOptions::default().file_extension(if ext.is_empty() {
                ".parquet"
            } else {
                &ext
            });
            ctx.register_parquet(name, path, read)
                .await
                .map_err(unreadable)?
        }
        InputFormat::Csv => {
            // A .tsv file is tab-separated unless the user chose a delimiter.
            let delimiter = if ext == ".tsv" && options.csv_delimiter == ',' {
                '\t'
            } else {
                options.csv_delimiter
            };
            let delimiter = u8::try_from(delimiter).map_err(|_| {
                CliError::Usage(format!(
                    "--csv-delimiter must be one ASCII character; got '{}'.",
                    options.csv_delimiter
                ))
            })?;
            let mut read = CsvReadOptions::new()
                .has_header(!options.csv_no_header)
                .delimiter(delimiter)
                .file_extension(if ext.is_empty() { ".csv" } else { &ext });
            if ext.ends_with(".gz") {
                read = read.file_compression_type(
                    datafusion::datasource::file_format::file_compression_type::FileCompressionType::GZIP,
                );
            } else if ext.ends_with(".zst") {
                read = read.file_compression_type(
                    datafusion::datasource::file_format::file_compression_type::FileCompressionType::ZSTD,
                );
            }
            ctx.register_csv(name, path, read)
                .await
                .map_err(unreadable)?
        }
        InputFormat::Ndjson => {
            let read = JsonReadOptions::default().file_extension(if ext.is_empty() {
                ".json"
            } else {
                &ext
            });
            ctx.register_json(name, path, read)
                .await
                .map_err(unreadable)?
        }
    }
    log::debug!("registered table {name} from {path} as {format:?}");
    Ok(())
}
