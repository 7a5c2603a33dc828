//! Where mapping may end a process: the worker child that maps in a separate process, and the
//! watchdog that ends a one-shot process whose jq expression runs away. The only code besides
//! `main.rs` that ends processes.

pub mod watchdog;
pub mod worker;
