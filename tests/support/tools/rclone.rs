//! The rclone client (Debian's package; Go's TLS stack): [`rclone_copy`]
//! copies a remote directory to a local one over explicit or implicit FTPS,
//! with its default parallel control connections sharing one TLS session
//! cache, and a hard timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{run_with_timeout, ClientOutput};
use super::{Tls, CLIENT_TIMEOUT};

/// rclone's `obscure` form of `pass` (its FTP backend takes no clear password).
fn obscured(pass: &str) -> String {
    let out = Command::new("rclone")
        .args(["obscure", pass])
        .output()
        .expect("rclone obscure");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `rclone copy` of the remote directory `remote` (relative to the login
/// directory) into `local`, as `user`/`pass`, with `tls` (explicit or
/// implicit), verbose, no retries beyond rclone's low-level ones.
pub fn rclone_copy(
    addr: SocketAddr,
    tls: Tls,
    user: &str,
    pass: &str,
    remote: &str,
    local: &Path,
) -> ClientOutput {
    let mode = match tls {
        Tls::Explicit => "explicit_tls=true",
        Tls::Implicit => "tls=true",
        Tls::None => "explicit_tls=false",
    };
    let source = format!(
        ":ftp,host={},port={},user={user},pass={},{mode},no_check_certificate=true:{remote}",
        addr.ip(),
        addr.port(),
        obscured(pass),
    );
    let mut cmd = Command::new("rclone");
    cmd.arg("copy")
        .arg(source)
        .arg(local)
        .args(["-v", "--retries", "1", "--contimeout", "20s"])
        // A private config path: no operator's rclone.conf is read.
        .env("RCLONE_CONFIG", "/dev/null");
    run_with_timeout(cmd, CLIENT_TIMEOUT + Duration::from_secs(5))
}
