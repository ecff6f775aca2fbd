//! Compiles the kernels for the host against kernels/emu (always), and writes the emulator's kernel
//! binary: a manifest naming the entry points it may load.

use std::path::PathBuf;

const EMU_SOURCES: &[&str] = &["kernels/emu/registry.cpp", "kernels/emu/selftest.cpp"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=kernels");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .files(EMU_SOURCES)
        .include("kernels")
        .include("kernels/emu")
        .opt_level(3)
        .warnings(true)
        .compile("ascend_cold_kernels_host");
    std::fs::write(
        out.join("kernels.emu"),
        "ascend-cold-emu-binary 1\nemu_selftest_add_f32\n",
    )
    .expect("OUT_DIR is writable");
}
