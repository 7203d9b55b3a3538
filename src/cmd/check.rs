use crate::cmd::EXIT_USAGE;
use crate::config::Settings;
use crate::discovery::validate;
use crate::docker::Docker;

/// Validates the labels of every container (running or not).
pub async fn run(settings: &Settings) -> anyhow::Result<i32> {
    let docker = Docker::connect(settings.scope.as_ref()).await?;
    let containers = docker.labeled_containers(true).await?;
    // Stopped containers do not compete for a service name with running ones.
    let running: Vec<_> = containers.iter().filter(|c| c.running).cloned().collect();
    let stopped: Vec<_> = containers.iter().filter(|c| !c.running).cloned().collect();
    let mut found = validate(&running, &settings.defaults);
    let stopped_found = validate(&stopped, &settings.defaults);
    found.problems.extend(stopped_found.problems.into_iter().filter(|p| !p.message.contains("claimed by several")));
    for spec in found.specs.iter().chain(&stopped_found.specs) {
        println!(
            "ok: container '{}': service {}, {}, schedule {}{}",
            spec.container.name,
            spec.service,
            spec.engine,
            spec.schedule,
            match &spec.databases {
                Some(d) => format!(", databases {}", d.join(",")),
                None => ", all databases".into(),
            }
        );
    }
    for problem in &found.problems {
        println!("error: {problem}");
    }
    let total = found.specs.len() + stopped_found.specs.len();
    println!("{} container(s) valid, {} problem(s)", total, found.problems.len());
    Ok(if found.problems.is_empty() { 0 } else { EXIT_USAGE })
}
