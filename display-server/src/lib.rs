//! Oriel display server: runs desktops, captures their damage, encodes frames and serves
//! clients over QUIC.

pub mod agent;
pub mod audio;
mod bzimage;
mod capture_pacer;
pub mod clipboard;
pub mod config;
pub mod cursor;
pub mod desktop;
pub mod eviction;
pub mod figures;
pub mod image_build;
pub mod metrics;
pub mod metrics_http;
pub mod microphone;
mod migration;
mod pipeline;
pub mod registry;
mod seat;
pub mod server;
pub mod session;
mod session_io;
mod shared;
pub mod slots;
pub mod source;
pub mod stats;
pub mod suspend;
pub mod thumbnail;
pub mod tickets;
pub mod vm_transfer;
pub mod web;

pub use desktop::Desktop;
pub use server::{DisplayServer, ServerConfig};
