//! Ctrl-C (SIGINT) as a request to stop: a long command checks [`interrupted`] between units of work,
//! keeps what is finished and exits with [`EXIT_CODE`]. A second Ctrl-C ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The conventional exit code of a command ended by SIGINT (128 + 2).
pub const EXIT_CODE: u8 = 130;

/// Catches SIGINT from now on: the first sets [`interrupted`], the next exits with [`EXIT_CODE`].
///
/// # Errors
/// The handler could not be installed.
pub fn install() -> ascend_cold::Result<()> {
    use signal_hook::consts::SIGINT;
    let failed = |e: std::io::Error| {
        ascend_cold::Error::parameter("SIGINT handler", "installed", format!("failed: {e}"))
    };
    // Registered first, so it runs before the flag is set: it exits only when the flag was set by
    // an earlier SIGINT.
    signal_hook::flag::register_conditional_shutdown(SIGINT, EXIT_CODE.into(), &INTERRUPTED)
        .map_err(failed)?;
    signal_hook::flag::register(SIGINT, &INTERRUPTED).map_err(failed)?;
    Ok(())
}

/// Whether SIGINT arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
