//! Looks for the AscendCL runtime the way `AclLibrary::open` does and says what it found.
//!
//! `cargo run -p ascend-sys --example probe` prints the search list, then either the library
//! that loaded (and what was passed over) or the error with every candidate and a remedy.
//! It loads the library but calls none of its functions.

use ascend_sys::{AclFunctions, AclLibrary, SearchPath};
use std::process::ExitCode;

fn main() -> ExitCode {
    println!("search list:");
    for candidate in SearchPath::from_env().candidates() {
        println!("  {candidate}");
    }
    match AclLibrary::open() {
        Ok(library) => {
            for attempt in library.skipped() {
                println!("passed over: {attempt}");
            }
            println!(
                "loaded {} ({} entry points resolved)",
                library.path().display(),
                AclFunctions::NAMES.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
