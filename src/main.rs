use clap::Parser;

use db_backup::cli::{Cli, Command};
use db_backup::cmd;
use db_backup::config::Settings;
use db_backup::exit::Exit;
use db_backup::restore::RestoreRequest;

fn main() {
    keep_the_heap_small();
    let cli = Cli::parse_from(db_backup::cli::args_with_command_from_program_name(std::env::args_os()));
    db_backup::logging::init();
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(run(cli)));
    let exit = match outcome {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Failed
        }
    };
    // The one place where an outcome becomes a process exit code.
    std::process::exit(exit.code());
}

/// glibc's malloc, left alone, gives each busy thread an arena of its own and raises its mmap
/// threshold past the 512 KiB–2 MiB blocks the pipelines pass between threads, so freed blocks stay
/// in the arenas: measured 5–26 MiB of peak RSS on backups and restores (bench/README.md, Memory).
/// Two arenas, and blocks of 256 KiB and more always mapped and unmapped, keep the heap at what
/// is in use. Called before any thread starts.
fn keep_the_heap_small() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

async fn run(cli: Cli) -> anyhow::Result<Exit> {
    // The label reference needs no settings: it must work even where they are wrong.
    if let Command::Labels = cli.command {
        return Ok(print_labels());
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    match cli.command {
        Command::Backup { service, json } => cmd::backup::run(&settings, service.as_str(), json).await,
        Command::Restore {
            service,
            archive,
            into,
            no_safety_backup,
            allow_other_container,
            json,
            from,
            host,
            allow_unsigned,
        } => {
            let archive = match cmd::remote::archive_for_restore(&settings, &service, archive, from, host).await? {
                Ok(archive) => archive,
                Err(code) => return Ok(code),
            };
            let request = RestoreRequest {
                service,
                archive,
                into,
                safety_backup: !no_safety_backup,
                allow_other_container,
                allow_unsigned,
                drill: false,
            };
            cmd::restore::run(&settings, request, json).await
        }
        Command::Drill { service, archive } => cmd::drill::run(&settings, service.as_str(), archive).await,
        Command::List { service, json, remote: true, host } => {
            cmd::remote::list(&settings, service.as_ref(), host.as_ref(), json).await
        }
        Command::List { service, json, .. } => cmd::list::run(&settings, service.as_ref(), json).await,
        Command::Sync { service } => cmd::remote::sync(&settings, service.as_ref()).await,
        Command::Check { json, labels_only } => cmd::check::run(&settings, json, labels_only).await,
        Command::Prune { service, dry_run, json } => {
            cmd::prune::run(&settings, service.as_ref(), cmd::prune::Options { dry_run, json }).await
        }
        Command::Verify { service, archive, all, json, allow_unsigned } => {
            let options = cmd::verify::Options { archive: archive.as_deref(), all, json, allow_unsigned };
            cmd::verify::run(&settings, &service, options).await
        }
        Command::Run => cmd::run::run(settings).await,
        Command::Status { json } => cmd::status::run(&settings, json).await,
        Command::Labels => Ok(print_labels()),
        Command::Healthcheck => Ok(cmd::healthcheck::run(&settings)),
    }
}

fn print_labels() -> Exit {
    print!("{}", db_backup::help::labels());
    Exit::Ok
}
