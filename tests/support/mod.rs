//! Shared test support: local stand-ins for the services tidemark talks to.
#![allow(dead_code)]

pub mod cloudcontrol;
pub mod moto;
pub mod sts;
