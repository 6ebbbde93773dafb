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
    /// Allowed, but every request that `required` would refuse is logged
    /// and counted as "would refuse" (a rollout step before enforcing).
    Audit,
}

/// Whether CCC (clear the control channel, RFC 4217 §5) is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ccc {
    /// 200, close_notify, plaintext control from then on.
    Allow,
    /// 534.
    Deny,
    /// Allowed, and logged and counted as "would refuse".
    Audit,
}

/// Whether data connections must resume the control session's TLS session.
/// YAML takes `true`, `false` or `audit`; the flag takes the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BoolOrWord")]
pub enum Reuse {
    /// Resumption is offered, not required.
    Off,
    /// An unbound protected data connection gets 522.
    Required,
    /// Unbound data connections are allowed, logged and counted as "would refuse".
    Audit,
}

impl Reuse {
    /// Data connections issue tickets and are checked (required or audited).
    pub fn is_checked(self) -> bool {
        self != Reuse::Off
    }
}

/// A YAML boolean or a word.
#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrWord {
    Bool(bool),
    Word(String),
}

impl TryFrom<BoolOrWord> for Reuse {
    type Error = String;
    fn try_from(v: BoolOrWord) -> Result<Reuse, String> {
        match v {
            BoolOrWord::Bool(b) => Ok(if b { Reuse::Required } else { Reuse::Off }),
            BoolOrWord::Word(w) => w.parse(),
        }
    }
}

impl FromStr for Reuse {
    type Err = String;
    fn from_str(s: &str) -> Result<Reuse, String> {
        match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "required" => Ok(Reuse::Required),
            "false" | "no" | "off" => Ok(Reuse::Off),
            "audit" => Ok(Reuse::Audit),
            _ => Err(format!("`{s}`: expected true, false or audit")),
        }
    }
}

/// When the backend connection is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendConnect {
    /// At once, relaying the backend's own greeting.
    OnAccept,
    /// ftpsgate greets; the backend is reached only once the client's TLS
    /// handshake has completed, so unauthenticated floods never reach it.
    AfterTls,
}

/// How ftpsgate's own log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The format of the transfer log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferLogFormat {
    /// One JSON object per transfer.
    Json,
    /// The classic wu-ftpd/ProFTPD/vsftpd `xferlog` line.
    Xferlog,
}

/// A byte count written `1048576`, `512K`, `10M` or `2G` (binary multiples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BoolOrWordOrNumber")]
pub struct Bytes(pub u64);

/// A number or a word, for sizes written either way in YAML.
#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrWordOrNumber {
    Number(u64),
    Word(String),
}

impl TryFrom<BoolOrWordOrNumber> for Bytes {
    type Error = String;
    fn try_from(v: BoolOrWordOrNumber) -> Result<Bytes, String> {
        match v {
            BoolOrWordOrNumber::Number(n) => Ok(Bytes(n)),
            BoolOrWordOrNumber::Word(w) => w.parse(),
        }
    }
}

impl FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Bytes, String> {
        let t = s.trim();
        let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}`: expected a size such as 1048576, 512K, 10M or 2G"))?;
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            "T" | "TB" | "TIB" => 40,
            _ => return Err(format!("`{s}`: unknown unit `{unit}` (use K, M, G or T)")),
        };
        n.checked_mul(1u64 << shift)
            .map(Bytes)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
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

/// Which PROXY protocol header a listener expects from its balancer
/// (HAProxy's proxy-protocol.txt). Anything but `off` also requires
/// `proxy_protocol_from`: only those networks may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No header; clients connect directly (the default).
    #[default]
    Off,
    /// The text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
    /// Either version.
    Any,
}

/// Whether ftpsgate sends a PROXY header to the backend (real client →
/// the backend address ftpsgate connected to), first on its control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendProxyProtocol {
    /// Nothing is sent (the default).
    #[default]
    Off,
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare
/// address is the network of that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network(pub ipnet::IpNet);

impl Network {
    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Network, String> {
        let t = s.trim();
        if let Ok(net) = t.parse::<ipnet::IpNet>() {
            return Ok(Network(net.trunc()));
        }
        t.parse::<IpAddr>()
            .map(|ip| Network(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not a network (CIDR such as 10.0.0.0/8, or an address)"))
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(s: String) -> Result<Network, String> {
        s.parse()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One split-horizon rule: clients inside `network` are told `address` in
/// 227 replies. Written `{network: 10.0.0.0/8, address: 10.1.2.3}` in YAML,
/// `10.0.0.0/8=10.1.2.3` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressByNetwork {
    /// The clients this rule is for.
    pub network: Network,
    /// What they are told.
    pub address: IpAddr,
}

impl FromStr for AddressByNetwork {
    type Err = String;
    fn from_str(s: &str) -> Result<AddressByNetwork, String> {
        let (net, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected NETWORK=ADDRESS, e.g. 10.0.0.0/8=10.1.2.3"))?;
        Ok(AddressByNetwork {
            network: net.parse()?,
            address: addr
                .trim()
                .parse()
                .map_err(|_| format!("`{addr}` is not an IP address"))?,
        })
    }
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

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.high - self.low) + 1
    }

    /// Never true: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
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
    fn sizes_and_reuse_words() {
        assert_eq!("512K".parse(), Ok(Bytes(512 * 1024)));
        assert_eq!("10M".parse(), Ok(Bytes(10 << 20)));
        assert_eq!("2 GiB".parse(), Ok(Bytes(2 << 30)));
        assert_eq!("100".parse(), Ok(Bytes(100)));
        assert!("10X".parse::<Bytes>().is_err());
        assert!("lots".parse::<Bytes>().is_err());
        assert_eq!("audit".parse(), Ok(Reuse::Audit));
        assert_eq!("true".parse(), Ok(Reuse::Required));
        assert_eq!("false".parse(), Ok(Reuse::Off));
    }

    #[test]
    fn networks_and_split_horizon_rules() {
        let n: Network = "10.1.2.3/8".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let one: Network = "127.0.0.2".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.2/32");
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("lan".parse::<Network>().is_err());
        let r: AddressByNetwork = "192.168.0.0/16=192.168.1.10".parse().unwrap();
        assert_eq!(r.address, "192.168.1.10".parse::<IpAddr>().unwrap());
        assert!("192.168.0.0/16".parse::<AddressByNetwork>().is_err());
        assert!("192.168.0.0/16=x".parse::<AddressByNetwork>().is_err());
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
