//! Ctrl-C and SIGTERM: remember the signal instead of dying on the spot, so the task can stop
//! its children, remove its staging directory and leave files as they were.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use anyhow::Result;
use signal_hook::consts::{SIGINT, SIGTERM};

/// The number of the first signal received, 0 while none.
static SIGNAL: LazyLock<Arc<AtomicUsize>> = LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// The error a task returns when it stopped because of a signal; `main` maps it to 128 + signal.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.0 == SIGINT {
            "Ctrl-C (SIGINT)"
        } else {
            "SIGTERM"
        };
        write!(
            f,
            "interrupted by {name}; stopped the running command and cleaned up"
        )
    }
}

impl std::error::Error for Interrupted {}

/// Installs the handlers. Called once by `main`. A second signal ends the process at once,
/// for the impatient user whose cleanup hangs.
pub fn install() -> Result<()> {
    let received = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, received.clone())?;
        signal_hook::flag::register(signal, received.clone())?;
        signal_hook::flag::register_usize(signal, SIGNAL.clone(), signal as usize)?;
    }
    Ok(())
}

/// True once a signal arrived.
pub fn requested() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

/// Returns `Err(Interrupted)` once a signal arrived.
pub fn check() -> Result<()> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => Ok(()),
        signal => Err(Interrupted(signal as i32).into()),
    }
}
