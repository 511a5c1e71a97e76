/*!
The `rfm` command-line tool.

`main` parses arguments, starts the logger and a Tokio runtime, runs one
command and turns its result into an exit code. Everything a user sees on
failure passes through [`CliError`], so messages have one shape
(`rfm: <message>` on stderr) and one set of exit codes:

| code | meaning |
| --- | --- |
| 0 | success |
| 1 | a query or the report failed while running |
| 2 | bad usage or unreadable input (missing file, bad flag, bad SQL text) |
| 130 | interrupted (Ctrl-C or SIGTERM); no partial output is left |

A closed stdout (`rfm demo | head -1`) ends the run quietly with code 0.
*/

mod args;
mod bad_rows;
mod demo;
mod generate;
mod output;
mod progress;
mod report;
mod sql;
mod summary;
mod tables;

use std::fmt;
use std::process::ExitCode;

use clap::Parser;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use args::{Cli, Command};

/// An error the user sees, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or unreadable input: exit code 2.
    Usage(String),
    /// A query or the report failed while running: exit code 1.
    Failed(String),
    /// The reader of stdout went away: stop quietly, exit code 0.
    ClosedPipe,
    /// Ctrl-C or SIGTERM: exit code 130.
    Interrupted,
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
            CliError::ClosedPipe => 0,
            CliError::Interrupted => 130,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => f.write_str(m),
            CliError::ClosedPipe => f.write_str("stdout was closed"),
            CliError::Interrupted => f.write_str("interrupted; no output was written"),
        }
    }
}

impl From<DataFusionError> for CliError {
    /// Planning errors come from the SQL text or its arguments (usage); the
    /// rest happen while running.
    fn from(e: DataFusionError) -> Self {
        let message = e.strip_backtrace();
        match e.find_root() {
            DataFusionError::Plan(_)
            | DataFusionError::SQL(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => CliError::Usage(message),
            _ => CliError::Failed(message),
        }
    }
}

/// Arrow and Parquet errors while writing output: the run failed.
impl From<datafusion::arrow::error::ArrowError> for CliError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<datafusion::parquet::errors::ParquetError> for CliError {
    fn from(e: datafusion::parquet::errors::ParquetError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::ClosedPipe
        } else {
            CliError::Failed(format!("cannot write: {e}"))
        }
    }
}

/// Writes a line to stdout, turning a closed or full stdout into an error
/// instead of the panic `println!` would raise.
pub fn say(line: &str) -> CliResult {
    use std::io::Write;

    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix).
async fn stop_requested() {
    loop {
        signal_received().await;
        if COMMITTING.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            return;
        }
        // Stopping halfway through replacing an output in a store would
        // leave old and new files mixed: the commit, and the run, finish.
        eprintln!("rfm: the output is being committed; it will be completed first");
    }
}

/// Commits in progress; while there is one, a stop request waits for it.
pub static COMMITTING: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn signal_received() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// A session with every function of the crate registered and the
/// information schema on, so `SHOW FUNCTIONS` works.
pub fn new_context(run: &args::RunArgs) -> CliResult<SessionContext> {
    // DataFusion's own settings may be tuned from the environment, e.g.
    // DATAFUSION_EXECUTION_BATCH_SIZE=32768.
    let config = SessionConfig::from_env()
        .map_err(|e| CliError::Usage(format!("a DATAFUSION_* variable: {e}")))?
        .with_information_schema(true);
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = &run.memory_limit {
        runtime = runtime.with_memory_limit(parse_size(limit)?, 1.0);
    }
    // Spill files go to a folder of this process's own, removed when it
    // ends, interrupted or not.
    let spill = SPILL_DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("rfm-spill-{}", std::process::id()))
    });
    std::fs::create_dir_all(spill)?;
    runtime = runtime.with_disk_manager_builder(
        DiskManagerBuilder::default()
            .with_mode(DiskManagerMode::Directories(vec![spill.clone()])),
    );
    let runtime = runtime.build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    datafusion_rfm::register_all(&ctx)?;
    Ok(ctx)
}

/// The folder spill files go to, once a session has been made.
static SPILL_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Bytes in a size such as `2g`, `512m`, `800k` or `1000000`.
fn parse_size(text: &str) -> CliResult<usize> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => f64::NAN,
    };
    match digits.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && scale.is_finite() => Ok((n * scale) as usize),
        _ => Err(CliError::Usage(format!(
            "--memory-limit must be a size such as 2g, 512m or 800k; got '{text}'."
        ))),
    }
}

/// Where the last panic happened and what it said.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records panics instead of printing them (`RUST_LOG=debug` prints them).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::debug!("panic: {message}{place}");
        if let Ok(mut last) = LAST_PANIC.lock() {
            last.get_or_insert(format!("{message}{place}"));
        }
    }));
}

fn panic_message() -> String {
    let what = LAST_PANIC
        .lock()
        .ok()
        .and_then(|last| last.clone())
        .unwrap_or_else(|| "no message".into());
    format!(
        "the query engine failed unexpectedly ({what}); no output was written. With \
         --memory-limit, a larger limit may avoid it; please report it with the \
         command that caused it."
    )
}

/// Runs the tool and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rfm: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // On a stop request the command's future is dropped, which removes any
    // output still under its temporary name.
    install_panic_hook();
    let result = runtime.block_on(async {
        let command = async {
            match cli.command {
                Command::Sql(a) => sql::run(a).await,
                Command::Report(a) => report::run(*a).await,
                Command::Demo(a) => demo::run(a).await,
                Command::Generate(a) => generate::run(a).await,
            }
        };
        // A panic inside a library (the query engine under memory pressure,
        // say) ends the command with an error, and its output is removed as
        // on any failure.
        let command = async {
            futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(command))
                .await
                .unwrap_or_else(|_| Err(CliError::Failed(panic_message())))
        };
        tokio::select! {
            biased;
            result = command => result,
            _ = stop_requested() => Err(CliError::Interrupted),
        }
    });
    runtime.shutdown_background();
    if let Some(dir) = SPILL_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
    // A query that ran out of the memory it may use: say how to give it more.
    let result = match result {
        Err(CliError::Failed(m))
            if m.contains("Resources exhausted")
                && m.contains(" with top memory consumers") =>
        {
            Err(CliError::Failed(format!(
                "{}: the query needs more memory than --memory-limit allows. Raise \
                 the limit or leave it out.",
                m.split(" with top memory consumers")
                    .next()
                    .unwrap_or_default()
                    .trim_end()
            )))
        }
        other => other,
    };
    match result {
        Ok(()) | Err(CliError::ClosedPipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rfm: {e}");
            ExitCode::from(e.code())
        }
    }
}
