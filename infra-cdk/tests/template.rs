//! The synthesized template holds every part of the pipeline with the
//! settings that matter (retention, TTL, redrive, batch item failures,
//! partition projection, encryption), and stages do not collide.

mod common;

use common::{get_att, of_type, properties, reference, resource, template};
use serde_json::{Value, json};

#[test]
fn every_part_of_the_pipeline_is_there() {
    let dev = template("dev");
    for (logical, resource_type) in [
        ("DevicePolicy", "AWS::IoT::Policy"),
        ("TelemetryRule", "AWS::IoT::TopicRule"),
        ("ReadingsStream", "AWS::Kinesis::Stream"),
        ("LakeDeliveryStream", "AWS::KinesisFirehose::DeliveryStream"),
        ("DecryptFunction", "AWS::Lambda::Function"),
        ("LakeBucket", "AWS::S3::Bucket"),
        ("LakeDatabase", "AWS::Glue::Database"),
        ("ReadingsTable", "AWS::Glue::Table"),
        ("AthenaWorkGroup", "AWS::Athena::WorkGroup"),
        ("AlarmsFunction", "AWS::Lambda::Function"),
        ("DevicesFunction", "AWS::Lambda::Function"),
        ("ReportsRule", "AWS::IoT::TopicRule"),
        ("ResultsRule", "AWS::IoT::TopicRule"),
        ("PresenceRule", "AWS::IoT::TopicRule"),
        ("SubscriptionsRule", "AWS::IoT::TopicRule"),
        ("DevicesDownlinkSweep", "AWS::Events::Rule"),
        ("AlarmsStreamMapping", "AWS::Lambda::EventSourceMapping"),
        ("AlarmsTable", "AWS::DynamoDB::Table"),
        ("AlarmsTopic", "AWS::SNS::Topic"),
        ("EnrichFunction", "AWS::Lambda::Function"),
        ("EnrichStreamMapping", "AWS::Lambda::EventSourceMapping"),
        ("JobsQueue", "AWS::SQS::Queue"),
        ("JobsDeadLetterQueue", "AWS::SQS::Queue"),
        ("StreamFailuresQueue", "AWS::SQS::Queue"),
        ("StatsFunction", "AWS::Lambda::Function"),
        ("StatsQueueMapping", "AWS::Lambda::EventSourceMapping"),
        ("StatsTable", "AWS::DynamoDB::Table"),
        ("RegistryDatabase", "AWS::RDS::DBInstance"),
        ("ApiFunction", "AWS::Lambda::Function"),
        ("HttpApi", "AWS::ApiGatewayV2::Api"),
        ("OpsTopic", "AWS::SNS::Topic"),
        ("DeviceKeysKey", "AWS::KMS::Key"),
        ("AlarmsTimers", "AWS::Events::Rule"),
        ("JobsDeadLetterQueueDepthAlarm", "AWS::CloudWatch::Alarm"),
        ("StreamBehindAlarm", "AWS::CloudWatch::Alarm"),
        ("LakeStaleAlarm", "AWS::CloudWatch::Alarm"),
    ] {
        assert_eq!(resource(&dev, logical)["Type"], resource_type, "{logical}");
    }
}

#[test]
fn the_stream_keeps_a_day_encrypted_and_the_edge_feeds_it_by_device() {
    let dev = template("dev");
    let stream = properties(&dev, "ReadingsStream");
    assert_eq!(stream["RetentionPeriodHours"], reference("StreamRetentionHours"));
    assert_eq!(dev["Parameters"]["StreamRetentionHours"]["Default"], 24);
    assert_eq!(stream["ShardCount"], reference("StreamShards"));
    assert_eq!(stream["StreamEncryption"], json!({ "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis" }));

    let rule = &properties(&dev, "TelemetryRule")["TopicRulePayload"];
    assert_eq!(rule["Sql"], "SELECT * FROM 'dev/wenu/+/telemetry'");
    assert_eq!(rule["Actions"][0]["Kinesis"]["PartitionKey"], "${topic(3)}");
    assert_eq!(rule["Actions"][0]["Kinesis"]["StreamName"], "wenu-dev-readings");
    assert!(rule["ErrorAction"]["S3"]["Key"].as_str().unwrap().starts_with("errors/${topic(3)}/"));
    let prod = template("prod");
    let prod_rule = &properties(&prod, "TelemetryRule")["TopicRulePayload"];
    assert_eq!(prod_rule["Sql"], "SELECT * FROM 'wenu/+/telemetry'");
    assert_eq!(prod_rule["Actions"][0]["Kinesis"]["PartitionKey"], "${topic(2)}");

    let policy = properties(&dev, "DevicePolicy")["PolicyDocument"].to_string();
    assert!(policy.contains(r#":client/${!iot:Connection.Thing.ThingName}"#), "{policy}");
    assert!(policy.contains(r#":topic/dev/wenu/${!iot:Connection.Thing.ThingName}/telemetry"#), "{policy}");
    assert!(policy.contains("iot:Connection.Thing.IsAttached"), "{policy}");
    // Basic Ingest reaches the same rule without the broker's per-message charge.
    assert!(
        policy.contains(
            r#":topic/$aws/rules/wenu_dev_telemetry/dev/wenu/${!iot:Connection.Thing.ThingName}/telemetry"#
        ),
        "{policy}"
    );
    assert_eq!(rule_name(&dev), "wenu_dev_telemetry");
    // Its own downlink and report topics, and nothing wider.
    let statements = &properties(&dev, "DevicePolicy")["PolicyDocument"]["Statement"];
    let resources = |action: &str| -> Vec<String> {
        let statement = statements.as_array().unwrap().iter().find(|s| s["Action"] == action).unwrap();
        statement["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Fn::Sub"].as_str().unwrap().to_owned())
            .collect()
    };
    let own = |kind: &str| format!("dev/wenu/${{!iot:Connection.Thing.ThingName}}/{kind}");
    assert!(resources("iot:Subscribe").iter().all(|r| r.contains(":topicfilter/")), "{statements}");
    for kind in ["config", "commands"] {
        assert!(
            resources("iot:Subscribe").iter().any(|r| r.ends_with(&format!(":topicfilter/{}", own(kind))))
        );
        assert!(resources("iot:Receive").iter().any(|r| r.ends_with(&format!(":topic/{}", own(kind)))));
    }
    for kind in ["reported", "results"] {
        assert!(resources("iot:Publish").iter().any(|r| r.ends_with(&format!(":topic/{}", own(kind)))));
    }
    assert!(!policy.contains('+') && !policy.contains('#'), "no wildcard in a device's policy: {policy}");
}

#[test]
fn firehose_decrypts_partitions_and_writes_parquet_through_the_glue_table() {
    let dev = template("dev");
    let delivery = properties(&dev, "LakeDeliveryStream");
    assert_eq!(
        delivery["KinesisStreamSourceConfiguration"]["KinesisStreamARN"],
        get_att("ReadingsStream", "Arn")
    );
    let s3 = &delivery["ExtendedS3DestinationConfiguration"];
    assert_eq!(
        s3["Prefix"],
        "readings/company=!{partitionKeyFromLambda:company}/date=!{partitionKeyFromLambda:date}/hour=!{partitionKeyFromLambda:hour}/"
    );
    assert!(s3["ErrorOutputPrefix"].as_str().unwrap().starts_with("processing-failed/"));
    assert_eq!(s3["DynamicPartitioningConfiguration"]["Enabled"], true);
    let processor = &s3["ProcessingConfiguration"]["Processors"][0];
    assert_eq!(processor["Type"], "Lambda");
    assert_eq!(
        processor["Parameters"][0],
        json!({ "ParameterName": "LambdaArn", "ParameterValue": get_att("DecryptFunction", "Arn") })
    );
    assert_eq!(s3["BufferingHints"]["SizeInMBs"], reference("LakeBufferMiB"));
    assert_eq!(s3["BufferingHints"]["IntervalInSeconds"], reference("LakeBufferSeconds"));
    let size = &dev["Parameters"]["LakeBufferMiB"];
    assert_eq!((size["MinValue"].as_i64(), size["MaxValue"].as_i64()), (Some(64), Some(128)));
    let interval = &dev["Parameters"]["LakeBufferSeconds"];
    assert_eq!((interval["MinValue"].as_i64(), interval["MaxValue"].as_i64()), (Some(60), Some(900)));

    let conversion = &s3["DataFormatConversionConfiguration"];
    assert_eq!(conversion["Enabled"], true);
    assert!(conversion["OutputFormatConfiguration"]["Serializer"]["ParquetSerDe"].is_object());
    assert_eq!(
        conversion["InputFormatConfiguration"]["Deserializer"]["HiveJsonSerDe"]["TimestampFormats"],
        json!(["millis"])
    );
    assert_eq!(conversion["SchemaConfiguration"]["DatabaseName"], "wenu_dev");
    assert_eq!(conversion["SchemaConfiguration"]["TableName"], "readings");
}

#[test]
fn the_glue_table_projects_partitions_so_athena_needs_no_crawler() {
    let dev = template("dev");
    let table = &properties(&dev, "ReadingsTable")["TableInput"];
    let parameters = &table["Parameters"];
    assert_eq!(parameters["projection.enabled"], "true");
    assert_eq!(parameters["projection.company.type"], "injected");
    assert_eq!(parameters["projection.date.type"], "date");
    assert_eq!(parameters["projection.date.format"], "yyyy-MM-dd");
    assert_eq!(parameters["projection.hour.type"], "integer");
    assert_eq!(parameters["projection.hour.digits"], "2");
    let template_path = parameters["storage.location.template"].to_string();
    assert!(
        template_path.contains("/readings/company=${company}/date=${date}/hour=${hour}/"),
        "{template_path}"
    );

    let names = |list: &Value| {
        list.as_array().unwrap().iter().map(|c| c["Name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(&table["PartitionKeys"]), ["company", "date", "hour"]);
    let columns = &table["StorageDescriptor"]["Columns"];
    assert_eq!(names(columns)[..4], ["device_id", "site", "sensor", "kind"]);
    let ts = columns.as_array().unwrap().iter().find(|c| c["Name"] == "ts").unwrap();
    assert_eq!(ts["Type"], "timestamp");
    assert_eq!(
        table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"],
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
}

#[test]
fn the_lake_bucket_is_encrypted_private_tls_only_and_expires_what_nobody_keeps() {
    let dev = template("dev");
    let bucket = properties(&dev, "LakeBucket");
    assert_eq!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    for setting in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(bucket["PublicAccessBlockConfiguration"][setting], true, "{setting}");
    }
    let rules = bucket["LifecycleConfiguration"]["Rules"].as_array().unwrap();
    for (prefix, days) in [("processing-failed/", 30), ("enrich-quarantine/", 90), ("errors/", 30)] {
        let rule = rules
            .iter()
            .find(|rule| rule["Prefix"] == prefix)
            .unwrap_or_else(|| panic!("no rule for {prefix}"));
        assert_eq!(rule["ExpirationInDays"], days);
    }
    let policy = &properties(&dev, "LakeBucketPolicy")["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"], "Deny");
    assert_eq!(policy["Condition"]["Bool"]["aws:SecureTransport"], "false");
}

#[test]
fn stream_consumers_report_failed_records_split_batches_and_keep_failures() {
    let dev = template("dev");
    for (mapping, function) in
        [("EnrichStreamMapping", "EnrichFunction"), ("AlarmsStreamMapping", "AlarmsFunction")]
    {
        let mapping = properties(&dev, mapping);
        assert_eq!(mapping["EventSourceArn"], get_att("ReadingsStream", "Arn"));
        assert_eq!(mapping["FunctionName"], get_att(function, "Arn"));
        assert_eq!(mapping["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]));
        assert_eq!(mapping["BisectBatchOnFunctionError"], true);
        assert_eq!(
            mapping["DestinationConfig"]["OnFailure"]["Destination"],
            get_att("StreamFailuresQueue", "Arn")
        );
    }
    // Alarms look at what happens now, with no batching delay.
    assert_eq!(properties(&dev, "AlarmsStreamMapping")["MaximumBatchingWindowInSeconds"], 0);
    assert_eq!(properties(&dev, "AlarmsStreamMapping")["StartingPosition"], "LATEST");
    assert_eq!(properties(&dev, "EnrichStreamMapping")["StartingPosition"], "TRIM_HORIZON");
    // Silent devices: the alarms function also runs every minute.
    let timers = properties(&dev, "AlarmsTimers");
    assert_eq!(timers["ScheduleExpression"], "rate(1 minute)");
    assert_eq!(timers["Targets"][0]["Arn"], get_att("AlarmsFunction", "Arn"));
    let permission = properties(&dev, "AlarmsTimersInvokeAlarmsFunction");
    assert_eq!(permission["Principal"], "events.amazonaws.com");
    assert_eq!(permission["SourceArn"], get_att("AlarmsTimers", "Arn"));
    // Enrich gathers a minute by default: one stats job per series and batch.
    assert_eq!(
        properties(&dev, "EnrichStreamMapping")["MaximumBatchingWindowInSeconds"],
        reference("StatsBatchingSeconds")
    );
    assert_eq!(dev["Parameters"]["StatsBatchingSeconds"]["Default"], 60);
}

#[test]
fn stats_jobs_are_redriven_to_a_dead_letter_queue_and_stats_expire() {
    let dev = template("dev");
    let jobs = properties(&dev, "JobsQueue");
    assert_eq!(jobs["FifoQueue"], true);
    assert_eq!(jobs["RedrivePolicy"]["deadLetterTargetArn"], get_att("JobsDeadLetterQueue", "Arn"));
    assert_eq!(jobs["RedrivePolicy"]["maxReceiveCount"], reference("JobsMaxReceiveCount"));
    assert_eq!(jobs["VisibilityTimeout"], 6 * properties(&dev, "StatsFunction")["Timeout"].as_i64().unwrap());
    assert_eq!(properties(&dev, "JobsDeadLetterQueue")["FifoQueue"], true);

    let mapping = properties(&dev, "StatsQueueMapping");
    assert_eq!(mapping["EventSourceArn"], get_att("JobsQueue", "Arn"));
    assert_eq!(mapping["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]));

    for table in ["StatsTable", "AlarmsTable"] {
        let table = properties(&dev, table);
        assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(
            table["TimeToLiveSpecification"],
            json!({ "AttributeName": "expires_at", "Enabled": true })
        );
        assert_eq!(table["SSESpecification"]["SSEEnabled"], true);
        assert_eq!(
            table["KeySchema"],
            json!([{ "AttributeName": "pk", "KeyType": "HASH" }, { "AttributeName": "sk", "KeyType": "RANGE" }])
        );
    }
    let dlq_alarm = properties(&dev, "JobsDeadLetterQueueDepthAlarm");
    assert_eq!(dlq_alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(dlq_alarm["Dimensions"][0]["Value"], json!({ "Fn::Sub": "${JobsDeadLetterQueue.QueueName}" }));
}

#[test]
fn the_registry_is_private_encrypted_and_its_credentials_are_a_secret() {
    let dev = template("dev");
    let database = properties(&dev, "RegistryDatabase");
    assert_eq!(database["Engine"], "postgres");
    assert_eq!(database["StorageEncrypted"], true);
    assert_eq!(database["PubliclyAccessible"], false);
    assert_eq!(database["ManageMasterUserPassword"], true);
    assert!(database.get("MasterUserPassword").is_none());
    let ingress = &properties(&dev, "RegistrySecurityGroup")["SecurityGroupIngress"];
    assert_eq!(ingress.as_array().unwrap().len(), 1);
    assert_eq!(ingress[0]["SourceSecurityGroupId"], reference("FunctionsSecurityGroup"));
    assert_eq!(ingress[0]["FromPort"], 5432);

    for function in ["DecryptFunction", "EnrichFunction", "AlarmsFunction", "ApiFunction"] {
        let function = properties(&dev, function);
        let variables = &function["Environment"]["Variables"];
        assert!(variables["WENU_REGISTRY_URL"].to_string().contains("Endpoint.Address"));
        assert_eq!(
            variables["WENU_REGISTRY_SECRET_ARN"],
            json!({ "Fn::Sub": "${RegistryDatabase.MasterUserSecret.SecretArn}" })
        );
        assert_eq!(variables["WENU_KEYS_SECRET_PREFIX"], "wenu/dev/device-keys");
        assert_eq!(function["VpcConfig"]["SecurityGroupIds"], json!([reference("FunctionsSecurityGroup")]));
    }
    // Stats reads no registry: it stays out of the VPC.
    assert!(properties(&dev, "StatsFunction").get("VpcConfig").is_none());
}

#[test]
fn every_function_is_graviton_al2023_traced_with_its_own_role_and_log_group() {
    let dev = template("dev");
    let functions = of_type(&dev, "AWS::Lambda::Function");
    assert_eq!(functions.len(), 6);
    let mut roles = Vec::new();
    for (logical, function) in functions {
        let function = &function["Properties"];
        assert_eq!(function["Architectures"], json!(["arm64"]), "{logical}");
        assert_eq!(function["Runtime"], "provided.al2023", "{logical}");
        assert_eq!(function["Handler"], "bootstrap", "{logical}");
        assert_eq!(function["TracingConfig"]["Mode"], "Active", "{logical}");
        assert_eq!(function["Code"]["S3Bucket"], reference("ArtifactsBucket"), "{logical}");
        let id = logical.trim_end_matches("Function");
        assert_eq!(function["Code"]["S3Key"], reference(&format!("{id}CodeKey")), "{logical}");
        assert_eq!(function["LoggingConfig"]["LogGroup"], reference(&format!("{id}LogGroup")), "{logical}");
        roles.push(function["Role"].to_string());
    }
    roles.sort();
    roles.dedup();
    assert_eq!(roles.len(), 6, "one role per function");
    let api = properties(&dev, "HttpApi");
    assert_eq!(api["ProtocolType"], "HTTP");
    assert_eq!(api["Target"], get_att("ApiFunction", "Arn"));
}

#[test]
fn operators_hear_of_lag_errors_throttles_stale_lake_and_dead_letters() {
    let dev = template("dev");
    let alarms = of_type(&dev, "AWS::CloudWatch::Alarm");
    let watched: Vec<(String, String)> = alarms
        .iter()
        .map(|(_, alarm)| {
            let alarm = &alarm["Properties"];
            assert_eq!(alarm["AlarmActions"], json!([reference("OpsTopic")]));
            (
                alarm["Namespace"].as_str().unwrap().to_owned(),
                alarm["MetricName"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let count =
        |namespace: &str, metric: &str| watched.iter().filter(|w| w.0 == namespace && w.1 == metric).count();
    assert_eq!(count("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds"), 1);
    assert_eq!(count("AWS/Lambda", "IteratorAge"), 2, "enrich and alarms");
    assert_eq!(count("AWS/Lambda", "Errors"), 5);
    assert_eq!(count("AWS/Lambda", "Throttles"), 5);
    assert_eq!(count("AWS/Firehose", "DeliveryToS3.DataFreshness"), 1);
    assert_eq!(count("AWS/Firehose", "DeliveryToS3.Success"), 1);
    assert_eq!(count("AWS/SQS", "ApproximateNumberOfMessagesVisible"), 2, "jobs DLQ and stream failures");
}

#[test]
fn an_address_can_receive_every_alarm_notification_by_e_mail() {
    let dev = template("dev");
    assert_eq!(dev["Parameters"]["AlarmsEmail"]["Default"], "");
    let subscription = resource(&dev, "AlarmsEmailSubscription");
    assert_eq!(subscription["Condition"], "HasAlarmsEmail");
    let properties = &subscription["Properties"];
    assert_eq!(properties["Protocol"], "email");
    assert_eq!(properties["TopicArn"], reference("AlarmsTopic"));
    assert_eq!(properties["Endpoint"], reference("AlarmsEmail"));
}

fn rule_name(template: &Value) -> &str {
    properties(template, "TelemetryRule")["RuleName"].as_str().unwrap()
}

/// Every string a resource is known by: its name properties, exports and
/// the stage tag.
fn physical_names(template: &Value) -> Vec<String> {
    const NAME_PROPERTIES: [&str; 12] = [
        "Name",
        "TableName",
        "QueueName",
        "FunctionName",
        "TopicName",
        "DeliveryStreamName",
        "LogGroupName",
        "PolicyName",
        "RuleName",
        "BucketName",
        "AlarmName",
        "DatabaseInput",
    ];
    let mut names = Vec::new();
    for (_, resource) in template["Resources"].as_object().unwrap() {
        for property in NAME_PROPERTIES {
            match &resource["Properties"][property] {
                Value::String(name) => names.push(name.clone()),
                Value::Object(object) if object.contains_key("Fn::Sub") => {
                    names.push(object["Fn::Sub"].to_string())
                }
                Value::Object(object) if object.contains_key("Name") => {
                    names.push(object["Name"].to_string())
                }
                _ => {}
            }
        }
    }
    for (_, output) in template["Outputs"].as_object().unwrap() {
        names.push(output["Export"]["Name"].as_str().unwrap().to_owned());
    }
    names
}

#[test]
fn stages_live_side_by_side_without_sharing_a_name() {
    let dev = template("dev");
    let prod = template("prod");
    let dev_names = physical_names(&dev);
    assert!(dev_names.len() > 40, "{dev_names:?}");
    for name in &dev_names {
        assert!(name.contains("wenu-dev") || name.contains("wenu_dev"), "{name} does not carry the stage");
    }
    let prod_names = physical_names(&prod);
    for name in &dev_names {
        assert!(!prod_names.contains(name), "{name} is in both stages");
    }
    for (logical, resource) in dev["Resources"].as_object().unwrap() {
        match &resource["Properties"]["Tags"] {
            Value::Array(tags) => {
                assert!(tags.contains(&json!({ "Key": "wenu:stage", "Value": "dev" })), "{logical}")
            }
            Value::Object(tags) => assert_eq!(tags["wenu:stage"], "dev", "{logical}"),
            _ => {}
        }
    }
}

#[test]
fn production_keeps_its_data_and_runs_the_database_in_two_zones() {
    let prod = template("prod");
    let dev = template("dev");
    assert_eq!(properties(&prod, "RegistryDatabase")["MultiAZ"], true);
    assert_eq!(properties(&prod, "RegistryDatabase")["DeletionProtection"], true);
    assert_eq!(resource(&prod, "RegistryDatabase")["DeletionPolicy"], "Snapshot");
    assert_eq!(properties(&dev, "RegistryDatabase")["MultiAZ"], false);
    for stateful in ["LakeBucket", "StatsTable", "AlarmsTable", "DeviceKeysKey"] {
        assert_eq!(resource(&prod, stateful)["DeletionPolicy"], "Retain", "{stateful}");
        assert_eq!(resource(&prod, stateful)["UpdateReplacePolicy"], "Retain", "{stateful}");
        assert_eq!(resource(&dev, stateful)["DeletionPolicy"], "Delete", "{stateful}");
    }
}

#[test]
fn a_bad_stage_name_is_refused() {
    assert!(infra_cdk::Stage::new("Prod").is_err());
    assert!(infra_cdk::Stage::new("this-is-too-long").is_err());
}

#[test]
fn devices_reports_presence_and_downlink_go_through_the_devices_function() {
    let dev = template("dev");
    let rule = |logical: &str| properties(&dev, logical)["TopicRulePayload"].clone();
    assert_eq!(
        rule("ReportsRule")["Sql"],
        "SELECT encode(*, 'base64') AS payload, topic(3) AS device_id, 'reported' AS kind FROM 'dev/wenu/+/reported'"
    );
    assert_eq!(
        rule("ResultsRule")["Sql"],
        "SELECT encode(*, 'base64') AS payload, topic(3) AS device_id, 'results' AS kind FROM 'dev/wenu/+/results'"
    );
    assert_eq!(rule("PresenceRule")["Sql"], "SELECT * FROM '$aws/events/presence/+/+'");
    assert_eq!(rule("SubscriptionsRule")["Sql"], "SELECT * FROM '$aws/events/subscriptions/subscribed/+'");
    for logical in ["ReportsRule", "ResultsRule", "PresenceRule", "SubscriptionsRule"] {
        assert_eq!(rule(logical)["Actions"][0]["Lambda"]["FunctionArn"], get_att("DevicesFunction", "Arn"));
        let permission = properties(&dev, &format!("{logical}InvokeDevicesFunction"));
        assert_eq!(permission["Principal"], "iot.amazonaws.com");
        assert_eq!(permission["SourceArn"], get_att(logical, "Arn"));
    }
    let prod = template("prod");
    let prod_reports = &properties(&prod, "ReportsRule")["TopicRulePayload"]["Sql"];
    assert_eq!(
        *prod_reports,
        "SELECT encode(*, 'base64') AS payload, topic(2) AS device_id, 'reported' AS kind FROM 'wenu/+/reported'"
    );
    let function = properties(&dev, "DevicesFunction");
    assert_eq!(function["Environment"]["Variables"]["WENU_TOPIC_PREFIX"], "dev");
    assert!(function["VpcConfig"].is_object(), "it writes the registry");
    // It publishes to the stage's downlink topics, nothing else.
    let role = properties(&dev, "DevicesRole").to_string();
    assert!(
        role.contains(":topic/dev/wenu/*/config") && role.contains(":topic/dev/wenu/*/commands"),
        "{role}"
    );
    assert!(!role.contains("iot:Subscribe") && !role.contains(":topic/dev/wenu/*/telemetry"), "{role}");
    assert_eq!(properties(&dev, "DevicesDownlinkSweep")["ScheduleExpression"], "rate(1 minute)");
}
