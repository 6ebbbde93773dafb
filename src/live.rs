//! State shared by all sessions that may change while the proxy runs: the
//! validated settings (policy, limits, backend) and the TLS context built
//! from them. It sits behind one [`LiveState`] handle that is swapped
//! atomically, never mutated (STYLE.md 2.15): a session takes a snapshot when
//! it starts and keeps it, so a reload never changes the rules under a
//! running session. What is fixed at bind time (the listeners, the passive
//! port pool) lives in [`crate::listener::Server`].

use std::sync::Arc;

use arc_swap::ArcSwap;

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
}

impl Live {
    /// The state for `settings` and `tls`, generation `generation`.
    pub fn new(settings: Settings, tls: TlsContext, generation: u64) -> Live {
        Live {
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
