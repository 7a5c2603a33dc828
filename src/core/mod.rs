//! The pure core: values in, values out. No async, no I/O, no process control; the adapters
//! and the engine feed it. `src/core` may import nothing from tokio, reqwest, rusqlite, the AWS
//! SDK, `std::process`, `std::fs` or `std::env` (checked by `tests/layout.rs`).

pub mod derive;
pub mod mapping;
pub mod model;
pub mod query;
pub mod reconcile;
pub mod regions;
pub mod report;
pub mod secret;
pub mod shard;
pub mod validate;
pub mod writes;
pub mod yaml;
