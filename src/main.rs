use clap::Parser;

use db_backup::cli::{Cli, Command};
use db_backup::cmd;
use db_backup::config::Settings;
use db_backup::restore::RestoreRequest;

#[tokio::main]
async fn main() {
    let cli = Cli::parse_from(db_backup::cli::args_with_command_from_program_name(std::env::args_os()));
    db_backup::logging::init();
    let code = match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            cmd::EXIT_FAILED
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(cmd::EXIT_USAGE);
        }
    };
    match cli.command {
        Command::Backup { service, json } => cmd::backup::run(&settings, &service, json).await,
        Command::Restore { service, archive, into, no_safety_backup } => {
            let request = RestoreRequest { service, archive, into, safety_backup: !no_safety_backup };
            cmd::restore::run(&settings, request).await
        }
        Command::List { service, json } => cmd::list::run(&settings, service.as_deref(), json).await,
        Command::Check { json, labels_only } => cmd::check::run(&settings, json, labels_only).await,
        Command::Prune { service, dry_run } => cmd::prune::run(&settings, service.as_deref(), dry_run).await,
        Command::Verify { service, archive, all } => {
            cmd::verify::run(&settings, &service, archive.as_deref(), all).await
        }
        Command::Run => cmd::run::run(settings).await,
        Command::Status { json } => cmd::status::run(&settings, json).await,
    }
}
