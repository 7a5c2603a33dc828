//! Desired entities + owned entities → a [`Plan`]: compare, guard, order. Pure.

pub mod compare;
pub mod order;
pub mod plan;
pub mod search;

pub use plan::{Issue, MassDelete, Plan};

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
