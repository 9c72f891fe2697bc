pub mod api;
pub mod events;
pub mod hostlink;
pub mod keys;
pub mod metrics;
pub mod password;
pub mod reconcile;
pub mod server;
pub mod store;

pub use server::{Broker, BrokerConfig};
