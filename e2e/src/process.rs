//! Child processes of the test cluster, tied to the harness's life.
//!
//! Each child is started through `setpriv --pdeathsig KILL`, so the kernel kills
//! it when the thread that started it dies: a crashed, failed or interrupted
//! test run leaves no etcd or API server behind. Start children from a thread
//! that lives as long as the cluster (see [`crate::shared`]).

use crate::Error;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct Process {
    pub(crate) name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Result<Self, Error> {
        let out = File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
        let child = start(program, args, out, &log)?;
        Ok(Self {
            name,
            program: program.to_owned(),
            args: args.to_vec(),
            child,
            log,
        })
    }

    /// Stops the process as an init system would (SIGTERM, SIGKILL after
    /// `grace`) and starts it again with the same command line, so on the
    /// same ports and data. Its log continues in the same file.
    pub(crate) async fn restart(&mut self, grace: Duration) -> Result<(), Error> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + grace;
        while self.child.try_wait().ok().flatten().is_none() {
            if tokio::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = OpenOptions::new()
            .append(true)
            .open(&self.log)
            .map_err(Error::io(format!("opening {}", self.log.display())))?;
        self.child = start(&self.program, &self.args, out, &self.log)?;
        Ok(())
    }

    /// Fails with the end of the process's log if it has exited.
    pub(crate) fn check(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name,
                status,
                log: self.log.clone(),
                tail: log_tail(&self.log, 30),
            }),
            Err(e) => Err(Error::io(format!("checking {}", self.name))(e)),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The data directories are throwaway, so there is nothing to flush.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(program: &Path, args: &[String], out: File, log: &Path) -> Result<Child, Error> {
    let err = out
        .try_clone()
        .map_err(Error::io(format!("opening {}", log.display())))?;
    Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(Error::io(format!("starting {}", program.display())))
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
