//! The default mappings, blueprints and JSON Schemas, embedded so that `mappings: [builtin:aws]`
//! works for an installed binary with no repository around it.

/// How a config names the embedded default mappings.
pub const BUILTIN_AWS: &str = "builtin:aws";
/// The name errors and plans use for the embedded mapping file.
pub const AWS_MAPPING_NAME: &str = "builtin:aws/aws.yaml";
pub const AWS_MAPPING: &str = include_str!("../../mappings/aws.yaml");
pub const AWS_BLUEPRINTS_NAME: &str = "builtin:aws/blueprints.json";
pub const AWS_BLUEPRINTS: &str = include_str!("../../mappings/blueprints.json");

pub const CONFIG_SCHEMA: &str = include_str!("../../schemas/config.schema.json");
pub const MAPPING_SCHEMA: &str = include_str!("../../schemas/mapping.schema.json");
