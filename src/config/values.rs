//! Typed configuration values, shared by the command line (clap `ValueEnum`
//! or `FromStr`) and the YAML file (serde): each word an operator can write
//! is parsed once, here, into the type the proxy uses.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::Deserialize;

/// Whether an edge policy is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    /// Enforced by the proxy.
    Required,
    /// Left to the client.
    Optional,
}

/// Whether CCC (clear the control channel, RFC 4217 §5) is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ccc {
    /// 200, close_notify, plaintext control from then on.
    Allow,
    /// 534.
    Deny,
}

/// How the proxy opens data connections toward the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendData {
    /// The proxy sends PASV/EPSV and connects.
    Passive,
    /// The proxy listens and sends PORT/EPRT.
    Active,
}

/// What an upload that ends with TCP FIN but no TLS close_notify means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadEof {
    /// Possible truncation: abort the backend transfer, reply 426.
    Strict,
    /// Accept it and log a warning.
    Lenient,
}

/// An inclusive port range with `1 <= low <= high`, written `LOW-HIGH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    /// First port.
    pub low: u16,
    /// Last port.
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let (low, high) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}`: expected LOW-HIGH, e.g. 50000-50100"))?;
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("`{p}` is not a port (1-65535)"))
        };
        let (low, high) = (port(low)?, port(high)?);
        if low > high {
            return Err(format!("low ({low}) is above high ({high})"));
        }
        Ok(PortRange { low, high })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<PortRange, String> {
        s.parse()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

/// The backend's host part: an IP literal or a DNS name (looked up per connection,
/// so a backend that moves or is down at start is still reached later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal.
    Ip(IpAddr),
    /// A DNS name.
    Name(String),
}

/// A backend address, `HOST:PORT` (IPv6 literals as `[::1]:21`), parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BackendAddr {
    /// IP literal or DNS name.
    pub host: Host,
    /// TCP port, never 0.
    pub port: u16,
}

impl BackendAddr {
    /// The DNS name, when the host is not an IP literal.
    pub fn name(&self) -> Option<&str> {
        match &self.host {
            Host::Name(n) => Some(n),
            Host::Ip(_) => None,
        }
    }
}

impl FromStr for BackendAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<BackendAddr, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            if a.port() == 0 {
                return Err(format!("`{s}`: port 0 is not a server port"));
            }
            return Ok(a.into());
        }
        match s.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !host.contains(':')
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
            {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("`{s}`: `{port}` is not a port (1-65535)"))?;
                Ok(BackendAddr {
                    host: Host::Name(host.to_string()),
                    port,
                })
            }
            _ => Err(format!("`{s}` is not HOST:PORT")),
        }
    }
}

impl TryFrom<String> for BackendAddr {
    type Error = String;
    fn try_from(s: String) -> Result<BackendAddr, String> {
        s.parse()
    }
}

impl From<SocketAddr> for BackendAddr {
    fn from(a: SocketAddr) -> BackendAddr {
        BackendAddr {
            host: Host::Ip(a.ip()),
            port: a.port(),
        }
    }
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(
            "50000-50010".parse(),
            Ok(PortRange {
                low: 50000,
                high: 50010
            })
        );
        assert_eq!(
            "5000-4000".parse::<PortRange>(),
            Err("low (5000) is above high (4000)".into())
        );
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("10".parse::<PortRange>().is_err());
    }

    #[test]
    fn backend_addresses() {
        let a: BackendAddr = "legacy.example:21".parse().unwrap();
        assert_eq!(a.name(), Some("legacy.example"));
        assert_eq!(a.to_string(), "legacy.example:21");
        let a: BackendAddr = "[::1]:2121".parse().unwrap();
        assert_eq!(a.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(a.to_string(), "[::1]:2121");
        for bad in ["nohost", "h:0", ":21", "a b:21", "::1:21", "h:x"] {
            assert!(bad.parse::<BackendAddr>().is_err(), "{bad}");
        }
    }
}
