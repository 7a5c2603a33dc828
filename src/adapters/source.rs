//! What a source is: lists raw items per (account, region, kind) and reports how every account
//! and listing went. Adapters: [`super::snapshot`] and [`super::aws`].

use std::future::Future;

use crate::adapters::requests::RequestCount;
use crate::core::model::RawItem;
use crate::core::report::{ListRequest, SourceReport};

/// Receives items as pages arrive, so a large listing is never held whole by the source.
/// Sources that list concurrently send pages to the task that called `list`, which feeds the sink.
pub trait ItemSink: Send {
    fn items(&mut self, items: Vec<RawItem>);
}

impl<F: FnMut(Vec<RawItem>) + Send> ItemSink for F {
    fn items(&mut self, items: Vec<RawItem>) {
        self(items)
    }
}

/// A source failure that stops the run (exit 1): no credentials, an unreadable snapshot.
/// Failures of one account or listing are not errors: they are reported in `SourceReport`.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("snapshot {path}: {message}")]
    Snapshot { path: String, message: String },
    #[error("AWS: {0}")]
    Aws(String),
}

/// A place resources are listed from.
pub trait Source: Send + Sync {
    /// Lists every needed (account, region, kind), handing items to `sink` as they arrive.
    fn list(
        &self,
        request: &ListRequest,
        sink: &mut dyn ItemSink,
    ) -> impl Future<Output = Result<SourceReport, SourceError>> + Send;

    /// Requests sent to remote APIs since the last call, for the daemon's metrics (see
    /// [`requests::RequestCounter::take`]). Sources that call no API have none.
    fn take_requests(&self) -> Vec<RequestCount> {
        Vec::new()
    }
}
