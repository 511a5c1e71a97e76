//! The `rfm` command: RFM SQL, the batch report and the demo.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
