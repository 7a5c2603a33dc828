//! The AWS side of a test: the STS and Cloud Control stand-ins on a runtime of their own, with the
//! `tidemark` binary (or tidemark's AWS source in this process) pointed at them.

use std::path::Path;
use std::process::Command;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use tidemark::adapters::aws::{AwsConfig, MemberAuth};
use tidemark::core::report::Regions;

use super::cloudcontrol::{CloudControl, Keys};
use super::sts::StsStandIn;

/// The STS stand-in, which knows `base_key`, and a Cloud Control stand-in that accepts the keys it
/// issues; the runtime serves both for as long as this lives.
pub struct AwsStandIns {
    pub runtime: tokio::runtime::Runtime,
    pub sts: StsStandIn,
    pub cc: CloudControl,
    base_key: String,
    base_secret: String,
}

impl AwsStandIns {
    /// Starts both stand-ins; a binary run through [`AwsStandIns::command_in`] signs in with
    /// `base_key` and `base_secret`.
    pub fn start(base_key: &str, base_secret: &str) -> AwsStandIns {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let sts = runtime.block_on(StsStandIn::start());
        sts.register_base_key(base_key);
        let cc = runtime.block_on(CloudControl::start(Keys::StandIn(sts.keys())));
        AwsStandIns {
            runtime,
            sts,
            cc,
            base_key: base_key.to_string(),
            base_secret: base_secret.to_string(),
        }
    }

    /// Another Cloud Control stand-in on the same STS, holding nothing yet.
    pub fn cloud_control(&self) -> CloudControl {
        self.runtime
            .block_on(CloudControl::start(Keys::StandIn(self.sts.keys())))
    }

    /// `program` run in `home` with nothing of this process's environment but `PATH`: the base
    /// keys and the endpoints of the STS stand-in and of `cc` (Cloud Control, Account,
    /// Organizations).
    pub fn command_in(&self, program: &str, home: &Path, cc: &CloudControl) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(home)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", &self.base_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.base_secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_STS", &self.sts.url)
            .env("AWS_ENDPOINT_URL_CLOUDCONTROL", &cc.url)
            .env("AWS_ENDPOINT_URL_ACCOUNT", &cc.url)
            .env("AWS_ENDPOINT_URL_ORGANIZATIONS", &cc.url)
            .env("NO_COLOR", "1");
        command
    }
}

/// The SDK's configuration for tidemark's AWS source in this process: static base keys
/// (`base_key`, which the STS stand-in must know) and every call sent to `endpoint`.
pub async fn sdk_config(endpoint: &str, base_key: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            base_key,
            "base-secret",
            None,
            None,
            "test",
        ))
        .load()
        .await
}

/// The AWS source's settings with no accounts named (the base account only), every enabled
/// region, and limits no test reaches.
pub fn source_config() -> AwsConfig {
    AwsConfig {
        account_role_arn: None,
        account_role_arns: None,
        external_id: None,
        member_auth: MemberAuth::Auto,
        organizational_units: Vec::new(),
        exclude: Vec::new(),
        regions: Regions::Enabled,
        concurrency_accounts: 5,
        requests_per_second: 1000.0,
    }
}
