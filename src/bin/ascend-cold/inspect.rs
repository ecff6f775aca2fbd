//! `ascend-cold inspect`: what a model and its adapters are, and whether they fit together.

use ascend_cold::model::{inspect::inspect, load_model};
use std::path::PathBuf;

/// Arguments of `inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A Hugging Face model folder or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// An adapter as NAME=DIR (a PEFT folder); repeatable.
    #[arg(long = "adapter", value_parser = parse_named_dir)]
    pub adapters: Vec<(String, PathBuf)>,
}

/// Parse `NAME=DIR`.
pub fn parse_named_dir(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_string(), PathBuf::from(dir)))
        }
        _ => Err(format!("expected NAME=DIR, got {s:?}")),
    }
}

/// Print the report. Exit code 0 when everything fits, 2 when an adapter does not fit the model.
pub fn run(args: &InspectArgs) -> ascend_cold::Result<u8> {
    let files = load_model(&args.model)?;
    let report = inspect(&files, &args.adapters);
    println!("model:         {}", args.model.display());
    print!("{report}");
    Ok(if report.all_adapters_fit() { 0 } else { 2 })
}
