pub mod api;
pub mod audit;
pub mod cluster_key;
pub mod config;
pub mod console;
pub mod events;
pub mod heartbeats;
pub mod hostlink;
pub mod in_doubt;
pub mod keys;
pub mod local_admin;
pub mod logoff;
pub mod metrics;
pub mod moves;
pub mod password;
pub mod reconcile;
pub mod relay;
pub mod server;
pub mod store;
pub mod suspend;
pub mod temp_postgres;
pub mod thumbnails;
mod web;

pub use server::{Broker, BrokerConfig};

/// Locks a mutex, taking the data back if a panicking thread poisoned it: the maps it
/// guards (connected hosts, backoffs, login counters) stay valid at every step.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
