//! Oriel display server: runs desktops, captures their damage, encodes frames and serves
//! clients over QUIC.

pub mod source;
