//! The Port catalog: REST client, ownership per account through `$datasource`, bulk writes,
//! retries and blueprint bootstrap. CONFIG TYPES ONLY for now; the client is being written.

use crate::secret::Secret;

/// `catalog:` of a `type: port` config, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct PortConfig {
    /// Without a trailing slash, e.g. `https://api.port.io`.
    pub base_url: String,
    pub client_id: Secret,
    pub client_secret: Secret,
}
