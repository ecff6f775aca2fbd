//! Link flags of the stand-in library.

fn main() {
    // The emulator inside keeps worker threads (one per stream) and process-wide state for as long as
    // the process lives; unmapping its code under those threads on dlclose would crash them, so the
    // library must stay loaded once opened, as libascendcl.so itself does in practice.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
