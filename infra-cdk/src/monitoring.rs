//! What tells the operators of the deployment that it is unwell, before a
//! customer does: CloudWatch alarms on the stream falling behind, function
//! errors and throttles, Firehose not delivering, jobs and batches given up
//! on, all to one SNS topic (with an optional e-mail subscription).

use serde_json::json;
use stratosphere::services::aws::{cloudwatch, sns};
use stratosphere::template::LogicalResourceName;
use stratosphere::value::{ExpBool, ExpString, equals_string};

use crate::functions::Function;
use crate::stack::{Stack, sub};

/// What the alarms watch.
pub struct Watched<'a> {
    pub stream_name: &'a str,
    /// Functions, with the iterator age (ms) above which a stream consumer
    /// is behind, for those the stream feeds.
    pub functions: Vec<(&'a Function, Option<f64>)>,
    pub delivery_stream_name: String,
    pub dead_letter_queues: Vec<&'a LogicalResourceName>,
    pub database: &'a LogicalResourceName,
}

struct Metric<'a> {
    namespace: &'a str,
    name: &'a str,
    statistic: &'a str,
    dimension: (&'a str, ExpString),
    comparison: &'a str,
    threshold: f64,
    /// Consecutive minutes over the threshold before the alarm fires.
    minutes: i32,
}

pub fn monitoring(stack: &mut Stack, watched: Watched) {
    let email = stack.parameter(
        "OpsEmail",
        json!({
            "Type": "String",
            "Default": "",
            "Description": "E-mail address subscribed to the operations alarms (empty: none)",
        }),
    );
    let topic = stack.resource(
        "OpsTopic",
        // Not encrypted with the AWS-managed SNS key: CloudWatch cannot use it.
        sns::Topic! { topic_name: stack.name("ops").as_str(), display_name: "Wenu operations", tags: stack.tags() },
    );
    let has_email = stack.condition("HasOpsEmail", ExpBool::Not(Box::new(equals_string(email.exp(), ""))));
    stack.conditional_resource(
        "OpsEmailSubscription",
        &has_email,
        sns::Subscription! { topic_arn: (&topic), protocol: "email", endpoint: email.exp() },
    );

    let alarm = |stack: &mut Stack, logical: &str, description: &str, metric: Metric| {
        stack.resource(
            logical,
            cloudwatch::Alarm! {
                alarm_name: format!("{}-{}", stack.name("ops"), logical).as_str(),
                alarm_description: description,
                namespace: metric.namespace,
                metric_name: metric.name,
                statistic: metric.statistic,
                dimensions: vec![cloudwatch::alarm::Dimension! { name: metric.dimension.0, value: metric.dimension.1 }],
                period: 60,
                evaluation_periods: metric.minutes,
                threshold: metric.threshold,
                comparison_operator: metric.comparison,
                treat_missing_data: "notBreaching",
                alarm_actions: vec![ExpString::from(&topic)],
                ok_actions: vec![ExpString::from(&topic)],
            },
        );
    };

    alarm(
        stack,
        "StreamBehindAlarm",
        "The oldest unread reading on the stream is over 5 minutes old: a reader is falling behind",
        Metric {
            namespace: "AWS/Kinesis",
            name: "GetRecords.IteratorAgeMilliseconds",
            statistic: "Maximum",
            dimension: ("StreamName", watched.stream_name.into()),
            comparison: "GreaterThanThreshold",
            threshold: 300_000.0,
            minutes: 5,
        },
    );
    for (function, behind_ms) in &watched.functions {
        let name = || ExpString::from(function.name.as_str());
        for (metric, what) in [("Errors", "failed invocations"), ("Throttles", "throttled")] {
            alarm(
                stack,
                &format!("{}{metric}Alarm", function.id),
                &format!("{} {what}", function.name),
                Metric {
                    namespace: "AWS/Lambda",
                    name: metric,
                    statistic: "Sum",
                    dimension: ("FunctionName", name()),
                    comparison: "GreaterThanThreshold",
                    threshold: 0.0,
                    minutes: 5,
                },
            );
        }
        if let Some(behind_ms) = behind_ms {
            alarm(
                stack,
                &format!("{}BehindAlarm", function.id),
                &format!("{} is behind the stream", function.name),
                Metric {
                    namespace: "AWS/Lambda",
                    name: "IteratorAge",
                    statistic: "Maximum",
                    dimension: ("FunctionName", name()),
                    comparison: "GreaterThanThreshold",
                    threshold: *behind_ms,
                    minutes: 3,
                },
            );
        }
    }
    let delivery = || ExpString::from(watched.delivery_stream_name.as_str());
    alarm(
        stack,
        "LakeStaleAlarm",
        "The oldest reading not yet in the lake is over 30 minutes old",
        Metric {
            namespace: "AWS/Firehose",
            name: "DeliveryToS3.DataFreshness",
            statistic: "Maximum",
            dimension: ("DeliveryStreamName", delivery()),
            comparison: "GreaterThanThreshold",
            threshold: 1800.0,
            minutes: 5,
        },
    );
    for (logical, description, metric) in [
        ("LakeDeliveryFailingAlarm", "Firehose could not write to the lake bucket", "DeliveryToS3.Success"),
        (
            "LakeTransformFailingAlarm",
            "Firehose could not call the decrypt function",
            "ExecuteProcessing.Success",
        ),
    ] {
        alarm(
            stack,
            logical,
            description,
            Metric {
                namespace: "AWS/Firehose",
                name: metric,
                statistic: "Minimum",
                dimension: ("DeliveryStreamName", delivery()),
                comparison: "LessThanThreshold",
                threshold: 1.0,
                minutes: 5,
            },
        );
    }
    for queue in &watched.dead_letter_queues {
        alarm(
            stack,
            &format!("{}DepthAlarm", queue.0),
            "Messages were given up on: inspect them, fix the cause, redrive",
            Metric {
                namespace: "AWS/SQS",
                name: "ApproximateNumberOfMessagesVisible",
                statistic: "Maximum",
                dimension: ("QueueName", sub(format!("${{{}.QueueName}}", queue.0))),
                comparison: "GreaterThanThreshold",
                threshold: 0.0,
                minutes: 1,
            },
        );
    }
    alarm(
        stack,
        "RegistryCpuAlarm",
        "The registry database is busy",
        Metric {
            namespace: "AWS/RDS",
            name: "CPUUtilization",
            statistic: "Average",
            dimension: ("DBInstanceIdentifier", ExpString::from(watched.database)),
            comparison: "GreaterThanThreshold",
            threshold: 80.0,
            minutes: 10,
        },
    );
    stack.output(
        "OpsTopicArn",
        "Operations alarms (CloudWatch) go to this SNS topic",
        ExpString::from(&topic),
    );
}
