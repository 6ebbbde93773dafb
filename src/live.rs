//! State shared by all sessions that may change while the proxy runs: the
//! validated settings (policy, limits, backend) and the TLS context built
//! from them. It sits behind one [`LiveState`] handle that is swapped
//! atomically, never mutated (STYLE.md 2.15): a session takes a snapshot when
//! it starts and keeps it, so a reload never changes the rules under a
//! running session. What is fixed at bind time (the listeners, the passive
//! port pool) lives in [`crate::listener::Server`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::backends::Pool;
use crate::config::Settings;
use crate::data::rate::Rate;
use crate::tls::TlsContext;

/// One generation of the changeable state.
pub struct Live {
    /// Validated settings.
    pub settings: Settings,
    /// TLS configurations built from them.
    pub tls: TlsContext,
    /// The bandwidth cap all transfers share (`rate_total`).
    pub rate_total: Option<Arc<Rate>>,
    /// 1 for the state the proxy started with, +1 per accepted reload.
    pub generation: u64,
    /// The backends of these settings, with their health and sessions.
    pub pool: Arc<Pool>,
    /// The certificate, key and client CA files as they were just before
    /// `tls` was read from them: the watcher reloads when they differ.
    pub cert_files: FileStamps,
}

impl Live {
    /// The state for `settings` and `tls`, generation `generation`;
    /// `cert_files` were taken before `tls` was built. Backends unchanged
    /// since `previous` keep their health and session counts.
    pub fn new(
        settings: Settings,
        tls: TlsContext,
        generation: u64,
        cert_files: FileStamps,
        previous: Option<&Live>,
    ) -> Live {
        Live {
            pool: Arc::new(Pool::new(&settings.backends, previous.map(|p| &*p.pool))),
            cert_files,
            rate_total: settings.rate_total.map(Rate::new),
            settings,
            tls,
            generation,
        }
    }
}

/// The handle sessions take their snapshot from.
pub struct LiveState {
    current: ArcSwap<Live>,
}

impl LiveState {
    /// Starts with `live`.
    pub fn new(live: Live) -> LiveState {
        LiveState {
            current: ArcSwap::from_pointee(live),
        }
    }

    /// The state in force now; a session keeps it for its lifetime.
    pub fn snapshot(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// Puts `next` in force for sessions that start from now on.
    pub fn replace(&self, next: Live) {
        self.current.store(Arc::new(next));
    }
}

/// Modification time and length of the certificate, key and client CA
/// files (`None` for one not configured or unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamps(Vec<Option<(SystemTime, u64)>>);

impl FileStamps {
    /// The files `settings` names, as they are now.
    pub fn of(s: &Settings) -> FileStamps {
        let files: [&Option<PathBuf>; 3] = [&s.cert, &s.key, &s.client_ca];
        FileStamps(
            files
                .iter()
                .map(|p| {
                    let meta = std::fs::metadata(p.as_ref()?).ok()?;
                    Some((meta.modified().ok()?, meta.len()))
                })
                .collect(),
        )
    }
}
