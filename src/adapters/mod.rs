//! The adapters behind the core: sources list raw items ([`Source`]: `snapshot`, `aws`),
//! catalogs hold what tidemark owns ([`Catalog`]: `local` SQLite, `port`). [`AnySource`] and
//! [`AnyCatalog`] pick the configured one.

use serde_json::Value as Json;

use crate::config::{CatalogConfig, Config, SourceConfig};
use crate::core::model::{
    Blueprint, EntityKey, ForeignEntity, ForeignReference, OwnedEntity, RawItem,
};
use crate::core::report::{AccountReport, Discovery, ListRequest, Regions, SourceReport};
use crate::core::writes::{ApplyReport, Progress, Writes};
use aws::AwsSource;
use local::LocalCatalog;
use port::{PortCatalog, PortOptions};
use requests::RequestCount;
use snapshot::SnapshotSource;

mod apply;
pub mod aws;
mod catalog;
pub mod local;
pub mod port;
pub mod requests;
pub mod snapshot;
mod source;

pub use catalog::{Catalog, CatalogError, PREFLIGHT_IDENTIFIER, ReadCheck, ReadOutcome};
pub use source::{ItemSink, Source, SourceError};

/// The configured source.
pub enum AnySource {
    Snapshot(SnapshotSource),
    Aws(Box<AwsSource>),
}

impl AnySource {
    pub async fn open(config: &Config) -> Result<AnySource, SourceError> {
        match &config.source {
            SourceConfig::Snapshot { path, regions } => Ok(AnySource::Snapshot(
                SnapshotSource::new(path, regions.clone()).with_shard(config.shard),
            )),
            SourceConfig::Aws(aws) => Ok(AnySource::Aws(Box::new(
                AwsSource::new(aws.clone()).await?.with_shard(config.shard),
            ))),
        }
    }

    /// Discovered accounts without listing any resources (`tidemark accounts`, `entities`).
    pub async fn accounts(&self) -> Result<(Discovery, Vec<AccountReport>), SourceError> {
        match self {
            AnySource::Snapshot(s) => {
                let request = ListRequest {
                    kinds: Vec::new(),
                    regions: Regions::Enabled,
                };
                let report = s.list(&request, &mut |_: Vec<RawItem>| {}).await?;
                Ok((report.discovery, report.accounts))
            }
            AnySource::Aws(s) => s.accounts().await,
        }
    }
}

impl Source for AnySource {
    fn take_requests(&self) -> Vec<RequestCount> {
        match self {
            AnySource::Snapshot(s) => s.take_requests(),
            AnySource::Aws(s) => s.take_requests(),
        }
    }

    async fn list(
        &self,
        request: &ListRequest,
        sink: &mut dyn ItemSink,
    ) -> Result<SourceReport, SourceError> {
        match self {
            AnySource::Snapshot(s) => s.list(request, sink).await,
            AnySource::Aws(s) => s.list(request, sink).await,
        }
    }
}

/// The configured catalog.
pub enum AnyCatalog {
    Local(LocalCatalog),
    Port(PortCatalog),
}

impl AnyCatalog {
    /// Whether the catalog records each entity's account itself (local); Port attributes
    /// ownership per discovered account, so reading what tidemark owns needs the account list.
    pub fn attributes_by_account(&self) -> bool {
        matches!(self, AnyCatalog::Local(_))
    }

    pub fn open(config: &Config) -> Result<AnyCatalog, CatalogError> {
        match &config.catalog {
            CatalogConfig::Local { path } => Ok(AnyCatalog::Local(LocalCatalog::open(path)?)),
            CatalogConfig::Port(port) => Ok(AnyCatalog::Port(PortCatalog::with_options(
                port.clone(),
                &config.integration.identifier,
                PortOptions {
                    adopt_prefixes: config.integration.adopt.clone(),
                    shard: config.shard,
                    ..PortOptions::default()
                },
            )?)),
        }
    }
}

/// Forwards a call to whichever catalog is configured.
macro_rules! each_catalog {
    ($self:ident, $c:ident => $call:expr) => {
        match $self {
            AnyCatalog::Local($c) => $call,
            AnyCatalog::Port($c) => $call,
        }
    };
}

impl Catalog for AnyCatalog {
    fn take_requests(&self) -> Vec<RequestCount> {
        each_catalog!(self, c => c.take_requests())
    }

    fn describe(&self) -> String {
        each_catalog!(self, c => c.describe())
    }

    async fn blueprints(&self) -> Result<Vec<Blueprint>, CatalogError> {
        each_catalog!(self, c => c.blueprints().await)
    }

    async fn owned(
        &self,
        owner: &str,
        accounts: &[String],
    ) -> Result<Vec<OwnedEntity>, CatalogError> {
        each_catalog!(self, c => c.owned(owner, accounts).await)
    }

    async fn foreign(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignEntity>, CatalogError> {
        each_catalog!(self, c => c.foreign(owner, keys).await)
    }

    async fn foreign_references(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignReference>, CatalogError> {
        each_catalog!(self, c => c.foreign_references(owner, keys).await)
    }

    async fn apply(&self, owner: &str, writes: &Writes, progress: &dyn Progress) -> ApplyReport {
        each_catalog!(self, c => c.apply(owner, writes, progress).await)
    }

    async fn search(&self, blueprint: &str, query: &Json) -> Result<Vec<String>, CatalogError> {
        each_catalog!(self, c => c.search(blueprint, query).await)
    }

    async fn preflight(
        &self,
        owner: &str,
        blueprints: &[String],
    ) -> Result<Vec<ReadCheck>, CatalogError> {
        each_catalog!(self, c => c.preflight(owner, blueprints).await)
    }
}
