//! Ctrl-C (SIGINT) as a request to stop cleanly: the first one sets a flag that long-running
//! subcommands poll between steps (they keep what is finished, say how to go on, and exit with
//! 130); a second one ends the process at once with 130, for a run that does not get to its next
//! poll.

use ascend_cold::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// The exit code of a run ended by SIGINT (128 + 2, as a shell reports it).
pub const EXIT_CODE: u8 = 130;

/// Installs the handler (once per process; later calls return the first outcome).
pub fn install() -> Result<()> {
    let outcome = INSTALLED.get_or_init(|| {
        use signal_hook::consts::SIGINT;
        // Registered first, so it sees the flag as it was before this signal: only a second
        // SIGINT finds it set and exits.
        signal_hook::flag::register_conditional_shutdown(SIGINT, i32::from(EXIT_CODE), &INTERRUPTED)
            .and_then(|_| signal_hook::flag::register(SIGINT, &INTERRUPTED))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    outcome.clone().map_err(|detail| Error::Io {
        path: "SIGINT handler".into(),
        source: std::io::Error::other(detail),
    })
}

/// Whether SIGINT arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
