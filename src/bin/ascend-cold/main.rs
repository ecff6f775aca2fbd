//! The `ascend-cold` command-line tool.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod decode;
mod eval;
mod inspect;

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
    /// Generate text: greedy, CoLD or sampled, for one prompt or a batch of requests.
    Decode(decode::DecodeArgs),
    /// Accuracy of greedy (base), greedy (adapter) and CoLD on a task of word problems.
    Eval(eval::EvalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Decode(args) => decode::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
