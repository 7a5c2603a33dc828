//! What tidemark knows about AWS regions without asking: which partition a region belongs to,
//! which regions every account has enabled by default ("standard") and which are opt-in, and so
//! the order in which regions are asked for global kinds and for S3 buckets.

/// The regions enabled by default in every `aws` account: those launched before 20 March 2019.
/// Every region AWS has opened since is opt-in (AWS Account Management guide, "Enable or disable
/// AWS Regions in your account"), so this list is closed: an `aws` region not in it is opt-in.
const DEFAULT_ENABLED: &[&str] = &[
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// Region name prefixes of the partitions other than `aws`, longest first where one prefix
/// starts another (`us-iso-` is not `us-isob-`).
const PARTITIONS: &[(&str, &str)] = &[
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
    ("eusc-", "aws-eusc"),
];

/// The region global services live in, per partition: where Cloud Control lists IAM,
/// CloudFront, Route 53 and S3's account-wide bucket list with the fewest surprises.
const HOME_REGIONS: &[&str] = &["us-east-1", "cn-north-1", "us-gov-west-1"];

/// The partition of `region`: `aws`, `aws-cn`, `aws-us-gov`, `aws-iso`, `aws-iso-b`,
/// `aws-iso-e`, `aws-iso-f` or `aws-eusc`.
pub fn partition_of(region: &str) -> &'static str {
    PARTITIONS
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// Whether `region` is enabled by default in every account of its partition. The partitions
/// other than `aws` have no opt-in regions.
pub fn is_standard(region: &str) -> bool {
    partition_of(region) != "aws" || DEFAULT_ENABLED.contains(&region)
}

/// Whether `region` is its partition's home for global services.
pub fn is_home(region: &str) -> bool {
    HOME_REGIONS.contains(&region)
}

/// The order in which to try `regions` for a global kind: the partition's home region, then the
/// other standard regions, then the opt-in ones, each group sorted. An opt-in region sorts
/// before `us-east-1` (`af-south-1`), and a service control policy may deny it, so sorted
/// order alone would list global kinds from the region most likely to refuse.
pub fn global_order(regions: &[String]) -> Vec<String> {
    let mut ordered: Vec<String> = regions.to_vec();
    ordered.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    ordered.dedup();
    ordered
}

/// The order in which to ask for an S3 bucket's full model: where it was found before, the
/// region it was listed from, then [`global_order`] of the account's regions.
pub fn bucket_order(
    found_before: Option<&str>,
    listed_in: &str,
    regions: &[String],
) -> Vec<String> {
    let mut ordered: Vec<String> = Vec::with_capacity(regions.len() + 2);
    for region in found_before
        .into_iter()
        .chain([listed_in])
        .map(str::to_string)
        .chain(global_order(regions))
    {
        if !ordered.contains(&region) {
            ordered.push(region);
        }
    }
    ordered
}

fn rank(region: &str) -> u8 {
    if is_home(region) {
        0
    } else if is_standard(region) {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(regions: &[&str]) -> Vec<String> {
        regions.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn partitions_follow_the_region_prefix() {
        for (region, partition) in [
            ("eu-west-1", "aws"),
            ("af-south-1", "aws"),
            ("cn-northwest-1", "aws-cn"),
            ("us-gov-east-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(partition_of(region), partition, "{region}");
        }
    }

    #[test]
    fn regions_opened_since_2019_are_opt_in() {
        assert!(is_standard("us-east-1") && is_standard("eu-north-1"));
        for region in [
            "af-south-1",
            "ap-east-1",
            "me-central-1",
            "eu-south-2",
            "mx-central-1",
        ] {
            assert!(!is_standard(region), "{region}");
        }
        assert!(is_standard("cn-north-1") && is_standard("us-gov-west-1"));
    }

    #[test]
    fn global_kinds_try_the_home_region_then_standard_then_opt_in_regions() {
        assert_eq!(
            global_order(&strings(&[
                "af-south-1",
                "eu-west-1",
                "ap-east-1",
                "us-east-1"
            ])),
            strings(&["us-east-1", "eu-west-1", "af-south-1", "ap-east-1"])
        );
        // Without the home region: the first standard region.
        assert_eq!(
            global_order(&strings(&["me-south-1", "us-west-2", "eu-central-1"])),
            strings(&["eu-central-1", "us-west-2", "me-south-1"])
        );
        assert_eq!(
            global_order(&strings(&["cn-northwest-1", "cn-north-1"])),
            strings(&["cn-north-1", "cn-northwest-1"])
        );
    }

    #[test]
    fn a_bucket_is_asked_for_where_it_was_found_before_then_where_it_was_listed() {
        let regions = strings(&["af-south-1", "eu-west-1", "us-east-1"]);
        assert_eq!(
            bucket_order(Some("af-south-1"), "us-east-1", &regions),
            strings(&["af-south-1", "us-east-1", "eu-west-1"])
        );
        assert_eq!(
            bucket_order(None, "eu-west-1", &regions),
            strings(&["eu-west-1", "us-east-1", "af-south-1"])
        );
    }
}
