//! Finding the requested Pythons and asking each which sub-interpreter API it has.

use super::runner::{self, Job, Outcome};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct PythonInfo {
    /// Column label: the version, made unique when two Pythons share one.
    pub label: String,
    /// As given on the command line.
    pub requested: String,
    /// What the children are started with (a venv's python stays the venv's).
    pub path: PathBuf,
    /// `sys.executable`.
    pub executable: PathBuf,
    pub version: String,
    pub implementation: String,
    /// `_xxsubinterpreters`, `_interpreters`, `concurrent.interpreters`, or none.
    pub backend: Option<String>,
    pub own_gil: bool,
    pub ext_suffix: Option<String>,
    pub soabi: Option<String>,
    /// A free-threaded build (`Py_GIL_DISABLED`): the label ends in `t`.
    pub free_threaded: bool,
    /// Compiler and linker facts for the embed host (what `python3.X-config --embed` says).
    #[serde(skip)]
    pub embed: Option<serde_json::Value>,
}

impl PythonInfo {
    /// `cpython-312` from `cpython-312-x86_64-linux-gnu`.
    pub fn abi_tag(&self) -> Option<&str> {
        let soabi = self.soabi.as_deref()?;
        let end = soabi
            .match_indices('-')
            .nth(1)
            .map_or(soabi.len(), |(i, _)| i);
        Some(&soabi[..end])
    }
}

/// Resolves a `--python` value the way a shell would: a path if it has a slash, else `PATH`.
pub fn resolve(requested: &str) -> Result<PathBuf, String> {
    if requested.contains('/') {
        let path = PathBuf::from(requested);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("python `{requested}` does not exist"))
        };
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join(requested))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("python `{requested}` is not on PATH"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs the probe's `info` check in every Python, in parallel.
pub fn describe(
    requested: &[String],
    probe: &Path,
    workers: usize,
) -> Result<Vec<PythonInfo>, String> {
    let mut jobs = Vec::new();
    for name in requested {
        jobs.push(Job::probe(
            &resolve(name)?,
            probe,
            vec!["info".into()],
            Duration::from_secs(30),
        ));
    }
    let runs = runner::run_all(&jobs, workers);
    let mut out: Vec<PythonInfo> = Vec::new();
    for ((name, job), run) in requested.iter().zip(&jobs).zip(runs) {
        let Some(info) = run.result.filter(|_| run.outcome == Outcome::Exited(0)) else {
            return Err(unusable(name, &job.program, &run.outcome, &run.stderr));
        };
        let text = |key: &str| info.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let version = info
            .get("version")
            .and_then(|v| v.as_array())
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.as_u64())
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
            })
            .map(|parts| parts.join("."))
            .unwrap_or_else(|| "?".into());
        let free_threaded = info
            .get("free_threaded")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        // `3.13.5t`, as `python3.13t` and the ABI tag `cpython-313t` spell it.
        let version = if free_threaded {
            format!("{version}t")
        } else {
            version
        };
        let mut label = version.clone();
        let mut n = 2;
        while out.iter().any(|p| p.label == label) {
            label = format!("{version}#{n}");
            n += 1;
        }
        out.push(PythonInfo {
            label,
            requested: name.clone(),
            path: job.program.clone(),
            executable: text("executable")
                .map(PathBuf::from)
                .unwrap_or_else(|| job.program.clone()),
            version,
            implementation: text("implementation").unwrap_or_default(),
            backend: text("backend"),
            own_gil: info
                .get("own_gil")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            ext_suffix: text("ext_suffix"),
            soabi: text("soabi"),
            free_threaded,
            embed: info.get("embed").cloned(),
        });
    }
    Ok(out)
}

/// One line: the name as given, what it resolved to, how it ended, and the first thing it
/// said (a pyenv shim's "command not found", not the last line of its advice).
fn unusable(name: &str, resolved: &Path, outcome: &Outcome, stderr: &str) -> String {
    let how = match outcome {
        Outcome::SpawnFailed(err) => format!("it could not be started: {err}"),
        Outcome::TimedOut => "it did not answer within 30 s".into(),
        Outcome::Signaled(signal) => format!("it was killed by signal {signal}"),
        Outcome::Exited(0) => "it ran, but the probe gave no answer".into(),
        Outcome::Exited(code) => format!("it exited with status {code}"),
    };
    let said = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    let same = resolved.as_os_str() == name;
    let resolved = if same {
        String::new()
    } else {
        format!(" (resolved to {})", resolved.display())
    };
    format!("cannot use python `{name}`{resolved}: {how}{said}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pyenv_shim_that_cannot_run_is_one_clear_line() {
        let stderr = "pyenv: python3.12: command not found\n\nThe `python3.12' command exists in these Python versions:\n  3.12.1\n\nNote: See 'pyenv help global' for tips on allowing multiple\n      Python versions to be found at the same time.\n";
        let line = unusable(
            "python3.12",
            Path::new("/root/.pyenv/shims/python3.12"),
            &Outcome::Exited(127),
            stderr,
        );
        assert_eq!(
            line,
            "cannot use python `python3.12` (resolved to /root/.pyenv/shims/python3.12): it exited with status 127: pyenv: python3.12: command not found"
        );
        assert!(!line.contains('\n'));
    }
}
