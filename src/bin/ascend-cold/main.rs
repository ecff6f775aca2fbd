//! The `ascend-cold` command-line tool.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod check;
mod common;
mod decode;
mod devices;
mod eval;
mod inspect;
mod interrupt;
mod run;
mod selftest;
mod stats;
mod tune;

/// Contrastive LoRA Decoding on Ascend NPUs (or the AscendCL emulator).
#[derive(Parser)]
#[command(name = "ascend-cold", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's architecture, size and memory, and whether each adapter fits it.
    Inspect(inspect::InspectArgs),
    /// List the devices found (the emulator always), say why there is no NPU, and self-check kernels.
    Devices(devices::DevicesArgs),
    /// Run one kernel on .npy inputs and write .npy outputs.
    Run(run::RunArgs),
    /// Check a kernel against the f64 reference on fresh random inputs (any shape and tiling).
    Check(check::CheckArgs),
    /// Search the valid tilings of a shape (emulator: cost model on its counters; NPU: event timing).
    Tune(tune::TuneArgs),
    /// Generate text: greedy, CoLD or sampled, for one prompt or a batch of requests.
    Decode(decode::DecodeArgs),
    /// Accuracy of greedy (base), greedy (adapter) and CoLD on a task of word problems.
    Eval(eval::EvalArgs),
    /// Board bring-up in one command: runtime, device, every kernel vs the reference, timings, a decode.
    Selftest(selftest::SelftestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Tune(args) => tune::run(args),
        Command::Decode(args) => decode::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Selftest(args) => selftest::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
