//! Cloud Control as it really behaves (issue 14): S3 buckets across regions, global kinds listed
//! from the partition's standard region, one listing per resource model and models derived from
//! a parent listing, types missing in a region, downstream errors, and list handlers that stop
//! short. The stand-in answers as AWS does (see `tests/support/cloudcontrol.rs`), whatever
//! tidemark expects.

use super::*;

const QUEUE: &str = "AWS::SQS::Queue";
const TOPIC: &str = "AWS::SNS::Topic";

#[tokio::test]
async fn a_general_service_exception_is_retried_like_throttling_unless_its_message_says_denied() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_plain(&cc, QUEUE, 5);
    add_plain(&cc, TOPIC, 2);
    // A downstream hiccup: three times, then served.
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: None,
        kind: Some(QUEUE.into()),
        effect: Effect::Transient {
            code: "GeneralServiceException".into(),
            message: "Internal error reported from downstream service during operation 'ListQueues'.".into(),
            times: 3,
        },
    });
    // The downstream service's own AccessDenied: no retry will fix it.
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: None,
        kind: Some(TOPIC.into()),
        effect: Effect::Error {
            code: "GeneralServiceException".into(),
            message: "User is not authorized to perform: SNS:ListTopics (Service: Sns, Status Code: 403, Request ID: 1)".into(),
        },
    });
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(vec![kind(QUEUE), kind(TOPIC)], list_of(&["us-east-1"])),
    )
    .await;
    let plan = plan_for(&report, &items, &[QUEUE, TOPIC]);
    assert_complete_scope(&report, &plan, QUEUE);
    assert_eq!(items.iter().filter(|i| i.kind == QUEUE).count(), 5);
    assert_failed_scope(&report, &plan, TOPIC, &["GeneralServiceException", "not authorized"]);
    let topic_calls = cc.calls().iter().filter(|c| c.kind == TOPIC).count();
    assert_eq!(topic_calls, 1, "a denial is not retried");
}
