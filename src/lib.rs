//! tidemark keeps a software catalog in step with the resources of many AWS accounts.
//!
//! The data path, one module per step:
//!
//! ```text
//! source (snapshot | aws) ──raw items──▶ mapping (jq) ──desired entities──▶
//! catalog (local | port) ──owned entities──▶ reconcile (diff, plan, guards) ──▶ render | apply
//! ```
//!
//! * [`config`] turns `tidemark.yaml` into a validated [`config::Config`] with every mapping compiled.
//! * [`source`] lists raw items and reports how every account and listing went.
//! * [`mapping`] is the only module that knows jaq: item in, entities out.
//! * [`catalog`] reads what tidemark owns and applies ordered writes.
//! * [`reconcile`] is pure: desired + owned → [`reconcile::Plan`] with withheld deletes.
//! * [`render`] prints plans as text, markdown or JSON.
//! * [`watch`] is the daemon: resync loop, hot reload, health and metrics.
//!
//! Start reading at [`reconcile::sync`], which runs one list → map → diff pass.

pub mod app;
pub mod catalog;
pub mod config;
pub mod mapping;
pub mod model;
pub mod reconcile;
pub mod render;
pub mod requests;
pub mod secret;
pub mod shard;
pub mod source;
pub mod watch;
pub mod yaml;
