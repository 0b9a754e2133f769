//! Devices on AWS besides their telemetry: one function that IoT Core
//! invokes with what devices report (`reported`, `results`), with their
//! lifecycle events (connected, disconnected, subscribed) and that a
//! schedule invokes every minute; it records them in the registry and
//! publishes each device's desired configuration and commands to its own
//! downlink topics through IoT Core's data plane.

use stratosphere::services::aws::{iot, lambda};

use crate::functions::{Function, FunctionSpec, Platform, every_minute, function};
use crate::iam;
use crate::registry::Registry;
use crate::stack::{Stack, arn};

pub fn devices(stack: &mut Stack, platform: &Platform, registry: &Registry) -> Function {
    let prefix = stack.stage.topic_prefix().map(|p| format!("{p}/")).unwrap_or_default();
    let downlink_topics: Vec<_> = ["config", "commands"]
        .iter()
        .map(|kind| iam::regional_arn("iot", &format!("topic/{prefix}wenu/*/{kind}")))
        .collect();
    let mut statements = registry.read_statements();
    statements.push(iam::allow(&["iot:Publish"], &downlink_topics));
    // Where to publish: the account's data endpoint, which only IoT Core names.
    statements.push(iam::allow_unscoped(&["iot:DescribeEndpoint"]));
    let mut environment = registry.environment();
    environment.retain(|(name, _)| *name != "WENU_KEYS_SECRET_PREFIX");
    environment.push(("WENU_TOPIC_PREFIX", stack.stage.topic_prefix().unwrap_or_default().into()));
    let function = function(
        stack,
        platform,
        FunctionSpec {
            id: "Devices",
            binary: "wenu-devices",
            description: "Records devices' presence, reports and command results; sends their configuration and commands",
            memory_mb: 256,
            timeout_secs: 30,
            in_vpc: true,
            environment,
            statements,
        },
    );

    // `${topic(N)}` is the device id: the segment after `wenu`. The payload
    // travels base64, so what a device sends cannot add fields of its own.
    let device_segment = if stack.stage.topic_prefix().is_some() { 3 } else { 2 };
    let report = |kind: &str| {
        format!(
            "SELECT encode(*, 'base64') AS payload, topic({device_segment}) AS device_id, '{kind}' AS kind \
             FROM '{prefix}wenu/+/{kind}'"
        )
    };
    let rules = [
        ("ReportsRule", "reported", report("reported"), "Devices' reports to the devices function"),
        ("ResultsRule", "results", report("results"), "Devices' command results to the devices function"),
        // Lifecycle events are the account's: the function ignores devices its registry does not hold.
        (
            "PresenceRule",
            "presence",
            "SELECT * FROM '$aws/events/presence/+/+'".to_owned(),
            "Connections and disconnections to the devices function",
        ),
        (
            "SubscriptionsRule",
            "subscribed",
            "SELECT * FROM '$aws/events/subscriptions/subscribed/+'".to_owned(),
            "Subscriptions to the devices function, which sends what waits for the device",
        ),
    ];
    for (logical, name, sql, description) in rules {
        let rule_name = format!("wenu_{}_{name}", stack.stage.identifier());
        let rule = stack.resource(
            logical,
            iot::TopicRule! {
                rule_name: rule_name.as_str(),
                topic_rule_payload: iot::topicrule::TopicRulePayload! {
                    sql: sql.as_str(),
                    aws_iot_sql_version: "2016-03-23",
                    description: description,
                    rule_disabled: false,
                    actions: vec![iot::topicrule::Action! {
                        lambda: Box::new(iot::topicrule::LambdaAction! { function_arn: function.arn() }),
                    }],
                },
                tags: stack.tags(),
            },
        );
        stack.resource(
            &format!("{logical}InvokeDevicesFunction"),
            lambda::Permission! {
                action: "lambda:InvokeFunction",
                function_name: function.arn(),
                principal: "iot.amazonaws.com",
                source_arn: arn(&rule),
            },
        );
    }
    // What changes while a device is connected reaches it at the next sweep.
    every_minute(
        stack,
        "DevicesDownlinkSweep",
        "devices-downlink",
        "Invokes the devices function every minute to send changed configurations and new commands",
        &function,
    );
    function
}
