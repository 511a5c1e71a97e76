//! The `rfm` command: RFM SQL, the batch report and the demo.

mod cli;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    cli::main()
}

/// Caps glibc's malloc at two arenas before any thread starts.
///
/// glibc gives threads arenas of their own, up to eight per core, and keeps
/// the memory freed in each for reuse by that arena. The report's threads
/// (query workers and the blocking threads that read files) each free
/// hundreds of megabytes at one point or another, so the process held far
/// more than it used: on the benchmark's 10 million lines, two arenas take
/// the report's peak from 392 to 300 MiB at the same speed.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; it is called before any
    // other thread exists, and an unknown parameter is refused, not applied.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
