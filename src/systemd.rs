//! The little of systemd ftpsgate speaks: `sd_notify` readiness messages
//! (READY, RELOADING, STOPPING, for `Type=notify-reload`/`Type=notify`
//! units) over `$NOTIFY_SOCKET`, and whether stderr goes to the journal
//! (`$JOURNAL_STREAM`), in which case log lines carry syslog priorities and
//! no timestamps of their own. Safe code only: a Unix datagram socket and
//! a metadata comparison.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`) to the service manager, if there is one.
/// Errors are ignored: outside systemd there is nobody to tell.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let _ = match path.strip_prefix('@') {
        Some(name) => abstract_addr(name).and_then(|a| socket.send_to_addr(state.as_bytes(), &a)),
        None => socket.send_to(state.as_bytes(), &path),
    };
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// `RELOADING=1` with the monotonic timestamp `Type=notify-reload` asks for.
/// Without a clock reading the field is left out (a zero would make
/// systemd take the reload as stale).
pub fn notify_reloading() {
    match monotonic_usec() {
        Some(t) => notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", t.as_micros())),
        None => notify("RELOADING=1"),
    }
}

/// The time since boot, read from `/proc/uptime` (no unsafe clock call
/// needed). That is CLOCK_BOOTTIME, never behind CLOCK_MONOTONIC, and
/// systemd only checks that the reload began after its request.
fn monotonic_usec() -> Option<Duration> {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
}

/// True when stderr is connected to the journal (`$JOURNAL_STREAM` names
/// stderr's device and inode), as systemd sets it for services.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let stream = stream.to_string_lossy();
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        // The variable is process-wide; this is the only test that sets it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(monotonic_usec().is_some_and(|t| t > Duration::ZERO));
    }
}
