use crate::cmd::{EXIT_FAILED, EXIT_USAGE};
use crate::config::Settings;
use crate::job::human_bytes;
use crate::manifest::ArchiveKind;
use crate::store::Store;
use crate::verify::{record_of, save_records, verify_archive};

/// Reads archives whole and checks them against their manifests: the newest by default.
pub async fn run(settings: &Settings, service: &str, archive: Option<&str>, all: bool) -> anyhow::Result<i32> {
    let store = Store::new(&settings.root);
    let archives = store.archives(service)?;
    if archives.is_empty() {
        eprintln!("error: service '{service}' has no archives under {}", store.root().join(service).display());
        return Ok(EXIT_USAGE);
    }
    let chosen: Vec<_> = match (archive, all) {
        (Some(name), _) => match archives.iter().find(|a| a.name == name) {
            Some(a) => vec![a.clone()],
            None => {
                let names: Vec<&str> = archives.iter().map(|a| a.name.as_str()).collect();
                eprintln!("error: --archive: no archive {name} for service {service}; it has: {}", names.join(", "));
                return Ok(EXIT_USAGE);
            }
        },
        (None, true) => archives.clone(),
        (None, false) => archives.iter().rev().filter(|a| a.kind == ArchiveKind::Backup).take(1).cloned().collect(),
    };
    let mut failed = 0;
    let mut records = Vec::new();
    for a in &chosen {
        let path = a.path.clone();
        let result = tokio::task::spawn_blocking(move || verify_archive(&path)).await?;
        match &result {
            Ok(m) => println!(
                "ok      {}  {}  {} entries, {} databases",
                a.name,
                human_bytes(a.size),
                m.entries.len(),
                m.databases.len()
            ),
            Err(e) => {
                failed += 1;
                println!("FAILED  {}  {e}", a.name);
            }
        }
        records.push((a.name.clone(), record_of(&result)));
    }
    if let Err(e) = save_records(&store.root().join(service), &records) {
        eprintln!("warning: cannot record the results: {e}");
    }
    println!("{} verified, {failed} failed", chosen.len());
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}
