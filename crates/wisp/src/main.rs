//! The `wisp` command: the server (`wisp serve`) and a client for its API.

mod client;
mod commands;
mod manifest;
mod pack;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wisp",
    version,
    about = "A self-hosted, event-driven serverless platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform with its embedded defaults.
    Serve(serve::ServeArgs),
    /// Deploy a function from a folder, or every function of a wisp.toml manifest.
    Deploy(commands::DeployArgs),
    /// Invoke a function and print its result.
    Invoke(commands::InvokeArgs),
    /// List functions.
    Ls(commands::ClientArgs),
    /// Show a function's configuration.
    Describe(commands::NameArgs),
    /// Delete a function.
    Rm(commands::NameArgs),
    /// Show a function's invocation logs.
    Logs(commands::LogsArgs),
    /// List, add and remove triggers (schedules, HTTP routes).
    Triggers(commands::TriggersArgs),
    /// Show a function's dead letters: async events that used up their attempts.
    DeadLetters(commands::NameArgs),
    /// Send a function's dead letters back to its queue.
    Redrive(commands::NameArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Deploy(args) => commands::deploy(args),
        Command::Invoke(args) => commands::invoke(args),
        Command::Ls(args) => commands::ls(args),
        Command::Describe(args) => commands::describe(args),
        Command::Rm(args) => commands::rm(args),
        Command::Logs(args) => commands::logs(args),
        Command::Triggers(args) => commands::triggers(args),
        Command::DeadLetters(args) => commands::dead_letters(args),
        Command::Redrive(args) => commands::redrive(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let mut message = format!("error: {err}");
            for cause in err.chain().skip(1) {
                message.push_str(&format!("\n  caused by: {cause}"));
            }
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
