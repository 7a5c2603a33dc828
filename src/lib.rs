//! tidemark keeps a software catalog in step with the resources of many AWS accounts.
//!
//! The data path is the folder structure:
//!
//! ```text
//! adapters (snapshot | aws) ──raw items──▶ core::mapping (jq) ──desired──▶
//! adapters (local | port) ──owned──▶ core::reconcile (compare, guards, plan) ──▶ render | apply
//! ```
//!
//! * [`core`] is pure: the model, source reports, writes, mapping and the planner.
//! * [`engine`] runs one pass (list → map → read the catalog → plan → apply) for every command.
//! * [`adapters`] talk to the world: sources ([`adapters::Source`]) and catalogs
//!   ([`adapters::Catalog`]).
//! * [`parallel`] maps a batch on every core.
//! * [`sandbox`] maps in a child process and ends runaway expressions.
//! * [`config`] turns `tidemark.yaml` into a validated [`config::Config`] with every mapping
//!   compiled.
//! * [`render`] prints plans as text, markdown or JSON; [`watch`] is the daemon.
//!
//! Start reading at [`engine::run`], which runs one pass.

pub mod adapters;
pub mod config;
pub mod core;
pub mod engine;
pub mod parallel;
pub mod render;
pub mod sandbox;
pub mod watch;
