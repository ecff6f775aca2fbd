//! The `ascend-cold` command-line tool.
use clap::Parser;

/// Contrastive LoRA Decoding on Ascend NPUs (or the AscendCL emulator).
#[derive(Parser)]
#[command(name = "ascend-cold", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
