//! Debian's HAProxy as a test balancer ([`HaProxy`]): run in the foreground
//! with a generated configuration, ready once a probe frontend accepts,
//! killed with its process group on drop.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::kill_group;
use super::HAPROXY;

/// A running haproxy.
pub struct HaProxy {
    child: Child,
    _dir: tempfile::TempDir,
    /// The configuration file, for messages.
    pub config: PathBuf,
}

impl HaProxy {
    /// Starts haproxy with `config` and waits until `probe` (a frontend of
    /// that configuration) accepts. `Err` if haproxy exits first (a port
    /// was taken: the caller retries with others) or is not ready in time.
    pub fn start(config: &str, probe: SocketAddr) -> io::Result<HaProxy> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let mut h = HaProxy {
            child,
            _dir: dir,
            config: path,
        };
        h.wait_ready(probe)?;
        Ok(h)
    }

    fn wait_ready(&mut self, probe: SocketAddr) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&probe, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let mut why = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut why);
                }
                return Err(io::Error::other(format!(
                    "haproxy exited ({status}): {why}"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("haproxy not ready within 20 s"));
            }
            // Bounded poll: haproxy gives no readiness signal but its listening sockets.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
