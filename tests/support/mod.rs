//! Helpers shared by the integration test binaries: stand-ins for the services tidemark talks to.

pub mod port_standin;
