//! Runs probe children: one process group each, a deadline, and a pool that
//! keeps results in submission order whatever order the children finish in.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const STAGE_PREFIX: &str = "##isolint-stage ";
pub const RESULT_PREFIX: &str = "##isolint-result ";

/// One child to run: `program <args...>` with `env` added to the environment.
#[derive(Debug, Clone)]
pub struct Job {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Variables taken out of the environment (`PYTHON_GIL` for gil-reenabled).
    pub env_remove: Vec<String>,
    pub timeout: Duration,
}

impl Job {
    /// `python -X faulthandler <probe> <args...>`.
    pub fn probe(python: &Path, probe: &Path, args: Vec<String>, timeout: Duration) -> Job {
        let mut all = vec![
            "-X".to_string(),
            "faulthandler".to_string(),
            probe.to_string_lossy().into_owned(),
        ];
        all.extend(args);
        Job {
            program: python.to_path_buf(),
            args: all,
            env: Vec::new(),
            env_remove: Vec::new(),
            timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    SpawnFailed(String),
}

#[derive(Debug, Clone)]
pub struct ChildRun {
    pub outcome: Outcome,
    /// Output with the protocol lines taken out.
    pub stdout: String,
    pub stderr: String,
    pub last_stage: Option<String>,
    pub result: Option<serde_json::Value>,
    pub duration: Duration,
}

impl ChildRun {
    /// The faulthandler dump, from its first line to the end of stderr.
    pub fn fault_traceback(&self) -> Option<String> {
        let start = self.stderr.find("Fatal Python error")?;
        Some(self.stderr[start..].trim_end().to_string())
    }
}

pub fn run_job(job: &Job) -> ChildRun {
    let started = Instant::now();
    let mut cmd = Command::new(&job.program);
    for name in &job.env_remove {
        cmd.env_remove(name);
    }
    cmd.args(&job.args)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout also takes down anything the module spawned.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            return ChildRun {
                outcome: Outcome::SpawnFailed(format!("{}: {err}", job.program.display())),
                stdout: String::new(),
                stderr: String::new(),
                last_stage: None,
                result: None,
                duration: started.elapsed(),
            }
        }
    };
    let out_rx = drain(child.stdout.take());
    let err_rx = drain(child.stderr.take());
    let outcome = wait_with_deadline(&mut child, job.timeout);
    // A grandchild that inherited the pipes can keep them open; do not wait on it forever.
    let grace = Duration::from_secs(2);
    let raw_out = out_rx.recv_timeout(grace).unwrap_or_default();
    let raw_err = err_rx.recv_timeout(grace).unwrap_or_default();
    let (stdout, result) = split_result(&raw_out);
    let (stderr, last_stage) = split_stages(&raw_err);
    ChildRun {
        outcome,
        stdout,
        stderr,
        last_stage,
        result,
        duration: started.elapsed(),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return match (status.code(), status.signal()) {
                    (Some(code), _) => Outcome::Exited(code),
                    (None, Some(sig)) => Outcome::Signaled(sig),
                    (None, None) => Outcome::Exited(-1),
                }
            }
            Ok(None) => {}
            Err(err) => return Outcome::SpawnFailed(err.to_string()),
        }
        if Instant::now() >= deadline {
            kill_group(child);
            return Outcome::TimedOut;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

fn kill_group(child: &mut Child) {
    // The child is not reaped yet, so its pid still names its own group.
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn split_result(raw: &str) -> (String, Option<serde_json::Value>) {
    let mut rest = String::new();
    let mut result = None;
    for line in raw.lines() {
        match line.strip_prefix(RESULT_PREFIX) {
            Some(json) => result = serde_json::from_str(json).ok(),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    (rest, result)
}

fn split_stages(raw: &str) -> (String, Option<String>) {
    let mut rest = String::new();
    let mut last = None;
    for line in raw.lines() {
        match line.strip_prefix(STAGE_PREFIX) {
            Some(stage) => last = Some(stage.to_string()),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    (rest, last)
}

/// Runs every job with at most `workers` children alive; `out[i]` belongs to `jobs[i]`.
pub fn run_all(jobs: &[Job], workers: usize) -> Vec<ChildRun> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<ChildRun>>> = Mutex::new(vec![None; jobs.len()]);
    thread::scope(|scope| {
        for _ in 0..workers.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                let run = run_job(job);
                slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(run);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|run| {
            run.unwrap_or_else(|| ChildRun {
                outcome: Outcome::SpawnFailed("the worker running this child stopped".into()),
                stdout: String::new(),
                stderr: String::new(),
                last_stage: None,
                result: None,
                duration: Duration::ZERO,
            })
        })
        .collect()
}

pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}
