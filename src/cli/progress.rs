//! A one-line progress note on stderr for long runs, shown only when stderr is
//! a terminal so logs and redirected output stay clean.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Shows `phase`, rows done and elapsed time every half second until dropped.
pub struct Progress {
    state: Arc<State>,
    handle: Option<JoinHandle<()>>,
}

struct State {
    done: AtomicBool,
    rows: AtomicUsize,
    phase: Mutex<String>,
}

impl Progress {
    pub fn start(phase: &str) -> Self {
        let state = Arc::new(State {
            done: AtomicBool::new(false),
            rows: AtomicUsize::new(0),
            phase: Mutex::new(phase.to_string()),
        });
        let handle = std::io::stderr().is_terminal().then(|| {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                let start = Instant::now();
                while !state.done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let phase = state.phase.lock().map(|p| p.clone()).unwrap_or_default();
                    let rows = state.rows.load(Ordering::Relaxed);
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[2Krfm: {phase}: {rows} rows, {:.1}s",
                        start.elapsed().as_secs_f64()
                    );
                    let _ = err.flush();
                }
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            })
        });
        Self { state, handle }
    }

    pub fn phase(&self, phase: &str) {
        if let Ok(mut p) = self.state.phase.lock() {
            *p = phase.to_string();
        }
        self.state.rows.store(0, Ordering::Relaxed);
    }

    pub fn rows(&self, rows: usize) {
        self.state.rows.store(rows, Ordering::Relaxed);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.state.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
