//! Routing by user (pure): which backend a login goes to, and the user name
//! the backend is sent. `user_routes` (the operator's map) is
//! authoritative; `USER name@backend` (with `user_at_backend: true`) picks a
//! backend for users the map does not name. A suffix that names no backend
//! is part of the user name (`USER bob@example.com` stays as it is).

use crate::config::Backends;

/// Where a login goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The user name to send the backend.
    pub user: String,
    /// The backend it must go to; `None` leaves the choice to the selection policy.
    pub backend: Option<String>,
}

/// Why a login cannot be routed: the reply text of a 530.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misrouted(pub String);

/// Routes the login `user`.
pub fn route(user: &str, backends: &Backends) -> Result<Routed, Misrouted> {
    let known = |name: &str| backends.members().iter().any(|m| m.name == name);
    let (base, asked) = match user.rsplit_once('@') {
        Some((base, name)) if backends.user_at_backend && !base.is_empty() && known(name) => {
            (base, Some(name))
        }
        _ => (user, None),
    };
    match (backends.user_routes.get(base), asked) {
        (Some(mapped), Some(asked)) if mapped != asked => Err(Misrouted(format!(
            "User {base} is served by {mapped}, not {asked}."
        ))),
        (Some(mapped), _) => Ok(Routed {
            user: base.to_string(),
            backend: Some(mapped.clone()),
        }),
        (None, asked) => Ok(Routed {
            user: base.to_string(),
            backend: asked.map(str::to_string),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NamedBackend, Target};

    fn backends(at: bool) -> Backends {
        let mut b = Backends::single("127.0.0.1:21".parse().unwrap());
        b.target = Target::Pool(
            ["east", "west"]
                .iter()
                .map(|n| NamedBackend {
                    name: n.to_string(),
                    address: "127.0.0.1:21".parse().unwrap(),
                })
                .collect(),
        );
        b.user_routes.insert("alice".into(), "east".into());
        b.user_at_backend = at;
        b
    }

    fn ok(user: &str, backend: Option<&str>) -> Result<Routed, Misrouted> {
        Ok(Routed {
            user: user.into(),
            backend: backend.map(str::to_string),
        })
    }

    #[test]
    fn the_map_routes_its_users() {
        let b = backends(false);
        assert_eq!(route("alice", &b), ok("alice", Some("east")));
        assert_eq!(route("bob", &b), ok("bob", None));
        // Without user_at_backend the suffix is part of the name.
        assert_eq!(route("bob@west", &b), ok("bob@west", None));
    }

    #[test]
    fn user_at_backend_picks_and_is_stripped() {
        let b = backends(true);
        assert_eq!(route("bob@west", &b), ok("bob", Some("west")));
        assert_eq!(route("bob@example.com", &b), ok("bob@example.com", None));
        assert_eq!(route("a@b@west", &b), ok("a@b", Some("west")));
        assert_eq!(route("@west", &b), ok("@west", None));
        assert_eq!(route("alice@east", &b), ok("alice", Some("east")));
        assert_eq!(
            route("alice@west", &b),
            Err(Misrouted("User alice is served by east, not west.".into()))
        );
    }
}
