//! The backend keys: `backend` (one server, or `original-destination` for
//! the transparent appliance mode), `backends` (a named pool), and how a
//! session picks one: `backend_selection`, `user_routes`, `user_at_backend`,
//! `backend_health_interval`, `original_destination_allow` and
//! `original_destination_port`. Values are typed here; the checks that span
//! keys live in [`Backends::validate`].

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::values::BackendAddr;
pub use super::values::Network;

/// What `--backend` / `backend:` names: one server, or the address each
/// client connection was originally sent to (kernel NAT redirect).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum BackendSpec {
    /// One plaintext FTP server.
    Address(BackendAddr),
    /// The connection's original destination (`SO_ORIGINAL_DST`).
    OriginalDestination,
}

impl FromStr for BackendSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<BackendSpec, String> {
        match s {
            "original-destination" => Ok(BackendSpec::OriginalDestination),
            _ => s
                .parse()
                .map(BackendSpec::Address)
                .map_err(|e| format!("{e} (or `original-destination` behind a kernel redirect)")),
        }
    }
}

impl TryFrom<String> for BackendSpec {
    type Error = String;
    fn try_from(s: String) -> Result<BackendSpec, String> {
        s.parse()
    }
}

/// One member of `backends:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedBackend {
    /// Used in `user_routes`, in `USER name@backend`, in logs and metrics.
    pub name: String,
    /// `HOST:PORT` of the plaintext FTP server.
    pub address: BackendAddr,
}

/// How a session that is not routed by user picks a backend of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The first healthy one in the order listed (a primary and standbys).
    FirstAvailable,
    /// Each healthy one in turn.
    RoundRobin,
    /// The healthy one with the fewest sessions now.
    LeastConnections,
}

/// Where sessions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One or more named servers (one `backend:` is a pool of one).
    Pool(Vec<NamedBackend>),
    /// Each connection's original destination, if inside `allow`.
    OriginalDestination {
        /// Destination networks ftpsgate may connect to (never empty).
        allow: Vec<Network>,
        /// Connect to this port instead of the original one (e.g. 21 behind
        /// an implicit listener that received port 990).
        port: Option<u16>,
    },
}

/// The validated backend settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    /// The servers, or the transparent mode.
    pub target: Target,
    /// Default first-available.
    pub selection: Selection,
    /// User name -> backend name; these users always go to that backend.
    pub user_routes: BTreeMap<String, String>,
    /// Whether `USER name@backend` picks the backend (and `name` is sent). Default false.
    pub user_at_backend: bool,
    /// How often each backend's greeting is checked, default 10 s.
    pub health_interval: Duration,
}

impl Backends {
    /// One server, the defaults for the rest.
    pub fn single(address: BackendAddr) -> Backends {
        Backends {
            target: Target::Pool(vec![NamedBackend {
                name: address.to_string(),
                address,
            }]),
            selection: Selection::FirstAvailable,
            user_routes: BTreeMap::new(),
            user_at_backend: false,
            health_interval: Duration::from_secs(10),
        }
    }

    /// Whether the backend is known only once the client sent USER.
    pub fn routes_by_user(&self) -> bool {
        !self.user_routes.is_empty() || self.user_at_backend
    }

    /// The pool's members (none in the transparent mode).
    pub fn members(&self) -> &[NamedBackend] {
        match &self.target {
            Target::Pool(m) => m,
            Target::OriginalDestination { .. } => &[],
        }
    }

    /// Checks what spans the keys; the error names the key to fix.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let mut seen = std::collections::BTreeSet::new();
        for m in self.members() {
            if !valid_name(&m.name) {
                return Err((
                    "backends",
                    format!("`{}`: a name is letters, digits, `.`, `_` and `-`", m.name),
                ));
            }
            if !seen.insert(m.name.as_str()) {
                return Err(("backends", format!("`{}` is named twice", m.name)));
            }
        }
        if let Target::OriginalDestination { allow, .. } = &self.target {
            if allow.is_empty() {
                return Err((
                    "original_destination_allow",
                    "missing: with backend: original-destination, list the destination networks \
                     ftpsgate may connect to (else it is an open relay)"
                        .into(),
                ));
            }
            if self.routes_by_user() {
                return Err((
                    "user_routes",
                    "routing by user needs a pool of backends, not original-destination".into(),
                ));
            }
        }
        for (user, name) in &self.user_routes {
            if !seen.contains(name.as_str()) {
                return Err(("user_routes", format!("{user}: no backend named `{name}`")));
            }
        }
        Ok(())
    }
}

/// A backend name: safe in logs, metrics labels and `USER name@backend`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(names: &[&str]) -> Backends {
        let mut b = Backends::single("127.0.0.1:21".parse().unwrap());
        b.target = Target::Pool(
            names
                .iter()
                .map(|n| NamedBackend {
                    name: n.to_string(),
                    address: "127.0.0.1:21".parse().unwrap(),
                })
                .collect(),
        );
        b
    }

    #[test]
    fn specs_and_networks_parse() {
        assert_eq!(
            "original-destination".parse(),
            Ok(BackendSpec::OriginalDestination)
        );
        assert!(matches!("h:21".parse(), Ok(BackendSpec::Address(_))));
        assert!("h"
            .parse::<BackendSpec>()
            .unwrap_err()
            .contains("original-destination"));
        let n: Network = "10.1.2.3/8".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.9".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!("192.0.2.7"
            .parse::<Network>()
            .unwrap()
            .contains("192.0.2.7".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(pool(&["a", "b"]).validate(), Ok(()));
        assert_eq!(pool(&["a", "a"]).validate().unwrap_err().0, "backends");
        assert_eq!(pool(&["a b"]).validate().unwrap_err().0, "backends");
        let mut routed = pool(&["a"]);
        routed.user_routes.insert("alice".into(), "b".into());
        assert_eq!(
            routed.validate(),
            Err(("user_routes", "alice: no backend named `b`".into()))
        );
        let mut open = pool(&[]);
        open.target = Target::OriginalDestination {
            allow: vec![],
            port: None,
        };
        assert_eq!(open.validate().unwrap_err().0, "original_destination_allow");
        open.target = Target::OriginalDestination {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            port: None,
        };
        assert_eq!(open.validate(), Ok(()));
        open.user_at_backend = true;
        assert_eq!(open.validate().unwrap_err().0, "user_routes");
    }
}
