//! The dev template created in moto's CloudFormation (`create_stack`), the
//! resources read back from the emulated services. moto models most of the
//! pipeline's resource types but not all: `tests/py/moto_stack.py` reduces
//! the template for it and reports what it left out, which this test pins
//! down exactly, so a change to what moto checks is seen.

mod common;

use std::process::Command;

use serde_json::{Value, json};

fn create_in_moto(stage: &str) -> Value {
    let python = std::env::var("MOTO_PYTHON")
        .expect("MOTO_PYTHON must name a Python with moto[server] installed; scripts/test.sh sets it up");
    let template = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(template.path(), common::template(stage).to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/moto_stack.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(template.path())
        .arg(format!("wenu-{stage}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(output.status.success(), "moto_stack.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("moto_stack.py prints JSON")
}

#[test]
fn the_dev_stack_is_created_in_moto() {
    let created = create_in_moto("dev");
    assert_eq!(created["status"], "CREATE_COMPLETE");

    // What moto could not check: resource types it does not model (created
    // as nothing) and the attributes read from them, the one output that
    // needs one, the RDS-managed secret, and the KMS key's tags.
    let mut unmodelled: Vec<String> = created["skipped"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().split_once(" (").unwrap().1.trim_end_matches(')').to_owned())
        .collect();
    unmodelled.sort();
    unmodelled.dedup();
    assert_eq!(
        unmodelled,
        [
            "AWS::ApiGatewayV2::Api",
            "AWS::Athena::WorkGroup",
            "AWS::CloudWatch::Alarm",
            "AWS::Glue::Database",
            "AWS::Glue::Table",
            "AWS::IoT::TopicRule",
            "AWS::KinesisFirehose::DeliveryStream",
            "AWS::Logs::LogStream",
            "AWS::S3::BucketPolicy",
            "AWS::SNS::Subscription",
        ]
    );
    assert_eq!(created["skipped"]["outputs"], json!(["ApiUrl"]));
    assert_eq!(
        created["skipped"]["properties"],
        json!(["DeviceKeysKey.Tags: moto reads KMS tags as TagKey/TagValue, not CloudFormation's Key/Value"])
    );
    // The RDS-managed secret, and the ARNs of the topic rules moto does not
    // create (the devices function's invoke permissions name them).
    for attribute in created["skipped"]["attributes"].as_array().unwrap() {
        let attribute = attribute.as_str().unwrap();
        let rule_arn = attribute.ends_with("Rule.Arn") && attribute.contains("RuleInvokeDevicesFunction");
        assert!(
            attribute.ends_with("RegistryDatabase.MasterUserSecret.SecretArn") || rule_arn,
            "{attribute}"
        );
    }

    let outputs = &created["outputs"];
    assert_eq!(outputs["StreamName"], "wenu-dev-readings");
    assert_eq!(outputs["TelemetryTopic"], "dev/wenu/+/telemetry");
    assert_eq!(outputs["DevicePolicyName"], "wenu-dev-device");
    assert_eq!(outputs["BasicIngestTopicPrefix"], "$aws/rules/wenu_dev_telemetry/dev");
    assert!(outputs["RegistryEndpoint"].as_str().unwrap().ends_with(".rds.amazonaws.com"));
    assert!(outputs["DeviceKeysKeyArn"].as_str().unwrap().contains(":kms:"));

    assert_eq!(created["stream"]["retention_hours"], 24);
    assert_eq!(created["stream"]["shards"], 1);

    let jobs = &created["queues"]["wenu-dev-jobs.fifo"];
    assert_eq!(jobs["FifoQueue"], "true");
    assert_eq!(jobs["VisibilityTimeout"], "180");
    let redrive: Value = serde_json::from_str(jobs["RedrivePolicy"].as_str().unwrap()).unwrap();
    assert_eq!(redrive["maxReceiveCount"], 5);
    assert!(redrive["deadLetterTargetArn"].as_str().unwrap().ends_with(":wenu-dev-jobs-dlq.fifo"));
    assert_eq!(created["queues"]["wenu-dev-jobs-dlq.fifo"]["MessageRetentionPeriod"], "1209600");
    assert_eq!(created["queues"]["wenu-dev-stream-failures"]["SqsManagedSseEnabled"], "true");

    for table in ["wenu-dev-stats", "wenu-dev-alarms"] {
        assert_eq!(created["tables"][table]["keys"], json!(["pk:HASH", "sk:RANGE"]), "{table}");
        assert_eq!(created["tables"][table]["billing"], "PAY_PER_REQUEST", "{table}");
    }

    let functions = created["functions"].as_object().unwrap();
    let mut names: Vec<&str> = functions.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "wenu-dev-alarms",
            "wenu-dev-api",
            "wenu-dev-decrypt",
            "wenu-dev-devices",
            "wenu-dev-enrich",
            "wenu-dev-stats"
        ]
    );
    for (name, function) in functions {
        assert_eq!(function["runtime"], "provided.al2023", "{name}");
    }
    assert_eq!(
        functions["wenu-dev-enrich"]["environment"],
        json!([
            "WENU_JOBS_DLQ_URL",
            "WENU_JOBS_QUEUE_URL",
            "WENU_KEYS_SECRET_PREFIX",
            "WENU_LAKE_BUCKET",
            "WENU_REGISTRY_SECRET_ARN",
            "WENU_REGISTRY_URL"
        ])
    );

    let mut mappings: Vec<String> = created["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["response_types"], json!(["ReportBatchItemFailures"]), "{m}");
            format!("{} -> {}", m["source"].as_str().unwrap(), m["function"].as_str().unwrap())
        })
        .collect();
    mappings.sort();
    assert_eq!(
        mappings,
        [
            "stream/wenu-dev-readings -> wenu-dev-alarms",
            "stream/wenu-dev-readings -> wenu-dev-enrich",
            "wenu-dev-jobs.fifo -> wenu-dev-stats"
        ]
    );
    assert_eq!(
        created["bucket"]["encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
}
