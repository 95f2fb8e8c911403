//! Finding and loading the project's configuration from the global options.

use std::io::IsTerminal;
use std::path::PathBuf;

use kiln_config::{Config, LoadError};

use crate::cli::GlobalArgs;
use crate::out::errln;

/// A failure to get a configuration, already rendered for the terminal.
pub struct ProjectError(pub String);

/// For the commands that talk to a running `kiln up` (status, wait, trigger, down, logs -f):
/// the configuration, or, when kiln.toml has errors, an empty one at the same root — the
/// running `kiln up` keeps its previous configuration and can still be asked and stopped.
/// The second value says it is the empty stand-in.
pub fn load_for_control(global: &GlobalArgs) -> Result<(Config, bool), ProjectError> {
    match load(global) {
        Ok(config) => Ok((config, false)),
        Err(e) => {
            let Some((file, root)) = locate(global).ok().filter(|(f, _)| f.exists()) else { return Err(e) };
            let Ok(config) = kiln_config::parse_str("", &file, &root, None) else { return Err(e) };
            errln!("{}", e.0.trim_end());
            errln!(
                "warning: {} has errors; asking the running `kiln up` anyway (it keeps its previous configuration)",
                file.display()
            );
            Ok((Config { file, ..config }, true))
        }
    }
}

/// Where kiln.toml is and the project root, without reading it.
fn locate(global: &GlobalArgs) -> Result<(PathBuf, PathBuf), ProjectError> {
    let cwd =
        std::env::current_dir().map_err(|e| ProjectError(format!("error: cannot read the current directory: {e}")))?;
    let start = global.dir.as_ref().map_or_else(|| cwd.clone(), |d| cwd.join(d));
    let file = match &global.file {
        Some(f) => start.join(f),
        None => kiln_config::find_config(&start).ok_or_else(|| ProjectError(String::new()))?,
    };
    let root = file.parent().map_or_else(|| cwd.clone(), |p| p.to_path_buf());
    Ok((file, root))
}

/// Whether to colour what goes to stderr.
pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Locates kiln.toml (`--file`, else upwards from `-C DIR` or the current directory) and
/// loads it with the selected profile.
pub fn load(global: &GlobalArgs) -> Result<Config, ProjectError> {
    let cwd =
        std::env::current_dir().map_err(|e| ProjectError(format!("error: cannot read the current directory: {e}")))?;
    let start = match &global.dir {
        Some(d) => cwd.join(d),
        None => cwd.clone(),
    };
    if global.dir.is_some() && !start.is_dir() {
        return Err(ProjectError(format!("error: -C {}: no such directory", start.display())));
    }
    let file: PathBuf = match &global.file {
        Some(f) => start.join(f),
        None => kiln_config::find_config(&start).ok_or_else(|| {
            ProjectError(format!(
                "error: no kiln.toml in {} or any parent directory\n  = help: create one, or point at it with --file PATH or -C DIR",
                start.display()
            ))
        })?,
    };
    let shown = file.strip_prefix(&cwd).map_or_else(|_| file.clone(), PathBuf::from);
    let bytes =
        std::fs::read(&file).map_err(|e| ProjectError(format!("error: cannot read {}: {e}", shown.display())))?;
    let root = file.parent().map_or_else(|| cwd.clone(), |p| p.to_path_buf());
    let mut config =
        kiln_config::parse_bytes(&bytes, &shown, &root, global.profile.as_deref()).map_err(|e| match e {
            LoadError::Invalid(diags) => ProjectError(diags.render(stderr_color())),
            other => ProjectError(format!("error: {other}")),
        })?;
    if let Some(engine) = global.engine {
        config.settings.engine = engine.choice();
    }
    Ok(config)
}
