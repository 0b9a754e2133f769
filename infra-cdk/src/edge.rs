//! Where devices come in: IoT Core. Each device is a thing with its own
//! certificate (`wenu devices provision --aws`); the policy lets it connect
//! only as itself, publish only to its own telemetry and report topics and
//! subscribe only to its own downlink topics; a topic rule
//! puts every telemetry message on the stream with the device id as
//! partition key, and what the rule cannot deliver in the lake bucket under
//! `errors/`.

use serde_json::{Value, json};
use stratosphere::services::aws::iot;
use stratosphere::value::ExpString;

use crate::iam;
use crate::lake::LakeBucket;
use crate::stack::{Stack, arn};
use crate::stream::Stream;

pub fn edge(stack: &mut Stack, stream: &Stream, bucket: &LakeBucket) {
    let rule_name = format!("wenu_{}_telemetry", stack.stage.identifier());
    // Basic Ingest: the same rule, reached without the message broker (and
    // without its per-message charge) by publishing under `$aws/rules/{rule}/`.
    let basic_ingest = format!("$aws/rules/{rule_name}");
    let policy_name = stack.name("device");
    stack.resource(
        "DevicePolicy",
        iot::Policy! {
            policy_name: policy_name.as_str(),
            policy_document: device_policy(stack.stage.topic_prefix(), &basic_ingest),
        },
    );

    let role = iam::role(
        stack,
        "TopicRuleRole",
        "iot.amazonaws.com",
        "IoT Core topic rule: telemetry to the stream, failures to the lake bucket",
        vec![
            iam::allow(&["kinesis:PutRecord"], &[stream.arn()]),
            iam::allow(&["s3:PutObject"], &[bucket.objects("errors/*")]),
        ],
    );
    // `${topic(N)}` is the device id: the segment after `wenu`.
    let device_segment = if stack.stage.topic_prefix().is_some() { 3 } else { 2 };
    let rule = iot::TopicRule! {
        rule_name: rule_name.as_str(),
        topic_rule_payload: iot::topicrule::TopicRulePayload! {
            sql: format!("SELECT * FROM '{}'", stack.stage.telemetry_topic_filter()).as_str(),
            aws_iot_sql_version: "2016-03-23",
            description: "Telemetry (sealed, binary) to the readings stream, partitioned by device",
            rule_disabled: false,
            actions: vec![iot::topicrule::Action! {
                kinesis: Box::new(iot::topicrule::KinesisAction! {
                    stream_name: stream.name.as_str(),
                    partition_key: format!("${{topic({device_segment})}}").as_str(),
                    role_arn: arn(&role),
                }),
            }],
            error_action: Box::new(iot::topicrule::Action! {
                s3: Box::new(iot::topicrule::S3Action! {
                    bucket_name: ExpString::from(&bucket.logical),
                    key: format!("errors/${{topic({device_segment})}}/${{timestamp()}}-${{newuuid()}}").as_str(),
                    role_arn: arn(&role),
                }),
            }),
        },
        tags: stack.tags(),
    };
    stack.resource("TelemetryRule", rule);
    stack.output(
        "DevicePolicyName",
        "The IoT policy every device certificate carries",
        policy_name.as_str().into(),
    );
    stack.output(
        "TelemetryTopic",
        "The MQTT topic filter devices publish to",
        stack.stage.telemetry_topic_filter().as_str().into(),
    );
    let ingest_prefix = match stack.stage.topic_prefix() {
        None => basic_ingest,
        Some(prefix) => format!("{basic_ingest}/{prefix}"),
    };
    stack.output(
        "BasicIngestTopicPrefix",
        "Publish under this prefix (wenu sim --topic-prefix) to skip IoT Core's messaging charge",
        ingest_prefix.as_str().into(),
    );
}

/// The device policy: connect only with the client id of the certificate's
/// thing (and only while the thing is attached), publish only to that
/// thing's telemetry topic (through the broker or by Basic Ingest) and its
/// `reported` and `results` topics, and subscribe to and receive only its
/// own `config` and `commands` topics (no wildcards: a filter is allowed
/// only when it is exactly one of them).
pub fn device_policy(topic_prefix: Option<&str>, basic_ingest: &str) -> Value {
    let own = |kind: &str| match topic_prefix {
        None => format!("wenu/${{iot:Connection.Thing.ThingName}}/{kind}"),
        Some(prefix) => format!("{prefix}/wenu/${{iot:Connection.Thing.ThingName}}/{kind}"),
    };
    let topic = own("telemetry");
    let downlink = [own("config"), own("commands")];
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": value_arn("client/${iot:Connection.Thing.ThingName}"),
                "Condition": { "Bool": { "iot:Connection.Thing.IsAttached": "true" } },
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [
                    value_arn(&format!("topic/{topic}")),
                    value_arn(&format!("topic/{basic_ingest}/{topic}")),
                    value_arn(&format!("topic/{}", own("reported"))),
                    value_arn(&format!("topic/{}", own("results"))),
                ],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": downlink.iter().map(|t| value_arn(&format!("topicfilter/{t}"))).collect::<Vec<_>>(),
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": downlink.iter().map(|t| value_arn(&format!("topic/{t}"))).collect::<Vec<_>>(),
            },
        ],
    })
}

/// An IoT ARN; `${iot:…}` policy variables are escaped from `Fn::Sub` as `${!…}`.
fn value_arn(resource: &str) -> Value {
    let escaped = resource.replace("${iot:", "${!iot:");
    crate::stack::value(&iam::regional_arn("iot", &escaped))
}
