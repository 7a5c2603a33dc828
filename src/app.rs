//! Picks the configured source and catalog adapters, and where items are mapped. The binary and
//! the daemon both start here.

use serde_json::Value as Json;

use crate::catalog::local::LocalCatalog;
use crate::catalog::port::{PortCatalog, PortOptions};
use crate::catalog::{ApplyReport, Catalog, CatalogError, Progress, ReadCheck, Writes};
use crate::config::{CatalogConfig, Config, SourceConfig};
use crate::mapping::worker::{Batch, Worker};
use crate::model::{
    Blueprint, EntityKey, ForeignEntity, ForeignReference, Origin, OwnedEntity, RawItem,
};
use crate::reconcile::{Collected, ItemMapper, MappingStopped, origin_of};
use crate::requests::RequestCount;
use crate::source::aws::AwsSource;
use crate::source::snapshot::SnapshotSource;
use crate::source::{
    AccountReport, Discovery, ItemSink, ListRequest, Source, SourceError, SourceReport,
};

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
                    regions: crate::source::Regions::Enabled,
                };
                let report = s
                    .list(&request, &mut |_: Vec<crate::model::RawItem>| {})
                    .await?;
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

impl Catalog for AnyCatalog {
    fn take_requests(&self) -> Vec<RequestCount> {
        match self {
            AnyCatalog::Local(c) => c.take_requests(),
            AnyCatalog::Port(c) => c.take_requests(),
        }
    }

    fn describe(&self) -> String {
        match self {
            AnyCatalog::Local(c) => c.describe(),
            AnyCatalog::Port(c) => c.describe(),
        }
    }

    async fn blueprints(&self) -> Result<Vec<Blueprint>, CatalogError> {
        match self {
            AnyCatalog::Local(c) => c.blueprints().await,
            AnyCatalog::Port(c) => c.blueprints().await,
        }
    }

    async fn owned(
        &self,
        owner: &str,
        accounts: &[String],
    ) -> Result<Vec<OwnedEntity>, CatalogError> {
        match self {
            AnyCatalog::Local(c) => c.owned(owner, accounts).await,
            AnyCatalog::Port(c) => c.owned(owner, accounts).await,
        }
    }

    async fn foreign(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignEntity>, CatalogError> {
        match self {
            AnyCatalog::Local(c) => c.foreign(owner, keys).await,
            AnyCatalog::Port(c) => c.foreign(owner, keys).await,
        }
    }

    async fn foreign_references(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignReference>, CatalogError> {
        match self {
            AnyCatalog::Local(c) => c.foreign_references(owner, keys).await,
            AnyCatalog::Port(c) => c.foreign_references(owner, keys).await,
        }
    }

    async fn apply(&self, owner: &str, writes: &Writes, progress: &dyn Progress) -> ApplyReport {
        match self {
            AnyCatalog::Local(c) => c.apply(owner, writes, progress).await,
            AnyCatalog::Port(c) => c.apply(owner, writes, progress).await,
        }
    }

    async fn search(&self, blueprint: &str, query: &Json) -> Result<Vec<String>, CatalogError> {
        match self {
            AnyCatalog::Local(c) => c.search(blueprint, query).await,
            AnyCatalog::Port(c) => c.search(blueprint, query).await,
        }
    }

    async fn preflight(
        &self,
        owner: &str,
        blueprints: &[String],
    ) -> Result<Vec<ReadCheck>, CatalogError> {
        match self {
            AnyCatalog::Local(c) => c.preflight(owner, blueprints).await,
            AnyCatalog::Port(c) => c.preflight(owner, blueprints).await,
        }
    }
}

/// Maps in a [`Worker`]'s child process: the answers come when [`finish`](ItemMapper::finish)ed.
/// A runaway or crashing expression then ends the child, not this process, and the error names
/// the item.
pub struct InWorker<'w> {
    batch: Option<Batch<'w>>,
    origins: Vec<Origin>,
}

impl<'w> InWorker<'w> {
    pub fn new(worker: &'w mut Worker) -> InWorker<'w> {
        InWorker {
            batch: Some(worker.batch()),
            origins: Vec::new(),
        }
    }
}

impl ItemMapper for InWorker<'_> {
    fn map(&mut self, item: &RawItem, _into: &mut Collected) {
        if let Some(batch) = self.batch.as_mut() {
            batch.send(item);
            self.origins.push(origin_of(item));
        }
    }

    fn finish(&mut self, into: &mut Collected) -> Result<(), MappingStopped> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        let origins = &self.origins;
        let describe = |i: usize| origins.get(i).map_or("an item".to_owned(), Origin::label);
        let outcomes = batch
            .finish(describe)
            .map_err(|e| MappingStopped(e.to_string()))?;
        if outcomes.len() != self.origins.len() {
            return Err(MappingStopped(format!(
                "the mapping worker answered {} of {} items",
                outcomes.len(),
                self.origins.len()
            )));
        }
        for (origin, outcome) in self.origins.drain(..).zip(outcomes) {
            into.record(origin, outcome);
        }
        Ok(())
    }
}
