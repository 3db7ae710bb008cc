//! `halyard`: parse the command line, resolve settings, and run the chosen command.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod config;
mod demo;
mod serve;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Serve(args) => config::Settings::resolve(&args)
            .map_err(|e| e.to_string())
            .and_then(|s| serve::run(&s)),
        cli::Command::Tenant { action } => serve::tenant(action),
        cli::Command::Check(args) => serve::check(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halyard: {e}");
            ExitCode::FAILURE
        }
    }
}
