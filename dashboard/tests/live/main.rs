//! The dashboard against a real nats-server: drones reporting at once, the WebSocket's pushes,
//! health and metrics through a NATS outage, a dashboard started later replaying the same
//! history, and refused input.
//!
//! The tests are one binary, so that the harness in `common.rs` is built once and used whole:
//! `picture.rs` has what the dashboard shows (fifty drones at once, the WebSocket's pushes),
//! `recovery.rs` how it comes through trouble (a NATS outage, a later start, refused input).

mod common;
mod picture;
mod recovery;
