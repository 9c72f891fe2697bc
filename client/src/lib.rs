//! Oriel client library.
