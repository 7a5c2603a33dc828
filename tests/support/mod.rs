//! Shared test support: local stand-ins for the services tidemark talks to. Each integration test
//! binary uses only some of them.
#![allow(dead_code)]

pub mod aws_stand_ins;
pub mod catalogs;
pub mod cli;
pub mod cloudcontrol;
pub mod fixtures;
pub mod jq;
pub mod list_models;
pub mod moto;
pub mod port_standin;
pub mod sts;
