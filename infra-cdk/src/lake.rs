//! The data lake: the S3 bucket, the Glue table Athena (and Redshift
//! Spectrum) query it through, and Firehose, which reads the stream, has
//! the decrypt function open every buffer, converts the rows to Parquet
//! through the Glue table and writes them under
//! `readings/company=…/date=…/hour=…/`, the keys the function returns.

use serde_json::json;
use stratosphere::services::aws::{athena, glue, kinesisfirehose as firehose, logs, s3};
use stratosphere::template::LogicalResourceName;
use stratosphere::value::{AWS_ACCOUNT_ID, ExpString, join};

use crate::functions::{Function, FunctionSpec, Platform, function};
use crate::iam;
use crate::registry::Registry;
use crate::stack::{Stack, arn, sub, value};
use crate::stream::Stream;

/// The lake's columns as the Glue (Hive) types Firehose converts the
/// decrypt function's JSON rows with: `lake/glue-columns.json`, which the
/// lake crate checks against the Parquet schema of the embedded lake.
pub const COLUMNS: &str = include_str!("../../lake/glue-columns.json");

/// The partition keys the decrypt function returns, in path order.
pub const PARTITION_KEYS: [&str; 3] = ["company", "date", "hour"];

pub struct LakeBucket {
    pub logical: LogicalResourceName,
}

impl LakeBucket {
    pub fn arn(&self) -> ExpString {
        arn(&self.logical)
    }

    /// The ARN of the objects under `pattern` (`readings/*`).
    pub fn objects(&self, pattern: &str) -> ExpString {
        sub(format!("${{{}.Arn}}/{pattern}", self.logical.0))
    }
}

pub struct Lake {
    pub decrypt: Function,
    pub delivery: LogicalResourceName,
}

/// The bucket: encrypted, private, TLS only, and what nobody reads for long
/// (failed records, quarantine, query results) expiring.
pub fn bucket(stack: &mut Stack) -> LakeBucket {
    let expire = |id: &str, prefix: &str, days: i32| {
        s3::bucket::Rule! {
            id: id,
            prefix: prefix,
            status: "Enabled",
            expiration_in_days: days,
        }
    };
    let logical = stack.resource(
        "LakeBucket",
        s3::Bucket! {
            bucket_name: sub(format!("{}-${{AWS::AccountId}}-${{AWS::Region}}", stack.name("lake"))),
            bucket_encryption: s3::bucket::BucketEncryption! {
                server_side_encryption_configuration: vec![s3::bucket::ServerSideEncryptionRule! {
                    server_side_encryption_by_default: Box::new(s3::bucket::ServerSideEncryptionByDefault! {
                        sse_algorithm: "AES256",
                    }),
                }],
            },
            public_access_block_configuration: s3::bucket::PublicAccessBlockConfiguration! {
                block_public_acls: true,
                block_public_policy: true,
                ignore_public_acls: true,
                restrict_public_buckets: true,
            },
            ownership_controls: s3::bucket::OwnershipControls! {
                rules: vec![s3::bucket::OwnershipControlsRule! { object_ownership: "BucketOwnerEnforced" }],
            },
            lifecycle_configuration: s3::bucket::LifecycleConfiguration! {
                rules: vec![
                    expire("processing-failed", "processing-failed/", 30),
                    expire("enrich-quarantine", "enrich-quarantine/", 90),
                    expire("rule-errors", "errors/", 30),
                    expire("athena-results", "athena-results/", 7),
                    s3::bucket::Rule! {
                        id: "incomplete-uploads",
                        status: "Enabled",
                        abort_incomplete_multipart_upload: Box::new(s3::bucket::AbortIncompleteMultipartUpload! {
                            days_after_initiation: 7,
                        }),
                    },
                ],
            },
            tags: stack.tags(),
        },
    );
    stack.keep_on_delete(&logical, "Retain");
    let bucket = LakeBucket { logical };
    stack.resource(
        "LakeBucketPolicy",
        s3::BucketPolicy! {
            bucket: (&bucket.logical),
            policy_document: json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "TlsOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [value(&bucket.arn()), value(&bucket.objects("*"))],
                    "Condition": { "Bool": { "aws:SecureTransport": "false" } },
                }],
            }),
        },
    );
    stack.output("LakeBucketName", "The S3 bucket of the lake", (&bucket.logical).into());
    bucket
}

pub fn lake(
    stack: &mut Stack,
    platform: &Platform,
    stream: &Stream,
    bucket: &LakeBucket,
    registry: &Registry,
) -> Lake {
    let database_name = format!("wenu_{}", stack.stage.identifier());
    let database = stack.resource(
        "LakeDatabase",
        glue::Database! {
            catalog_id: AWS_ACCOUNT_ID,
            database_input: glue::database::DatabaseInput! {
                name: database_name.as_str(),
                description: "Wenu's data lake: one row per reading",
            },
        },
    );
    let table = readings_table(stack, &database, &database_name, bucket);
    athena_workgroup(stack, bucket);

    let mut statements = registry.read_statements();
    statements.extend(registry.keys_read_statements());
    let decrypt = function(
        stack,
        platform,
        FunctionSpec {
            id: "Decrypt",
            binary: "wenu-decrypt",
            description: "Firehose transformation: opens sealed readings, rows with their lake partition",
            memory_mb: 512,
            timeout_secs: 120,
            in_vpc: true,
            environment: registry.environment(),
            statements,
        },
    );

    let delivery = delivery_stream(stack, stream, bucket, &decrypt, &database_name, &table);
    stack.output(
        "LakeDatabaseName",
        "The Glue database Athena queries (table readings)",
        database_name.as_str().into(),
    );
    Lake { decrypt, delivery }
}

fn readings_table(
    stack: &mut Stack,
    database: &LogicalResourceName,
    database_name: &str,
    bucket: &LakeBucket,
) -> LogicalResourceName {
    let column = |name: &str, kind: &str| glue::table::Column! { name: name, r#type: kind };
    let columns: Vec<(String, String)> =
        serde_json::from_str(COLUMNS).expect("lake/glue-columns.json is a list of pairs");
    let location = |suffix: &str| {
        join("", [ExpString::from("s3://"), ExpString::from(&bucket.logical), ExpString::from(suffix)])
    };
    // Partition projection: Athena computes the partitions from these
    // settings instead of a crawler listing them. The company is injected
    // (queries name it: `WHERE company = 'acme'`), dates run from 2024 to today.
    let parameters = json!({
        "classification": "parquet",
        "projection.enabled": "true",
        "projection.company.type": "injected",
        "projection.date.type": "date",
        "projection.date.format": "yyyy-MM-dd",
        "projection.date.range": "2024-01-01,NOW",
        "projection.date.interval": "1",
        "projection.date.interval.unit": "DAYS",
        "projection.hour.type": "integer",
        "projection.hour.range": "0,23",
        "projection.hour.digits": "2",
        "storage.location.template": value(&location("/readings/company=${company}/date=${date}/hour=${hour}/")),
    });
    let logical = stack.resource(
        "ReadingsTable",
        glue::Table! {
            catalog_id: AWS_ACCOUNT_ID,
            database_name: database_name,
            table_input: glue::table::TableInput! {
                name: "readings",
                description: "One row per reading, as Firehose writes them (Parquet)",
                table_type: "EXTERNAL_TABLE",
                parameters: parameters,
                partition_keys: PARTITION_KEYS.iter().map(|key| column(key, "string")).collect::<Vec<_>>(),
                storage_descriptor: Box::new(glue::table::StorageDescriptor! {
                    columns: columns.iter().map(|(name, kind)| column(name, kind)).collect::<Vec<_>>(),
                    location: location("/readings/"),
                    input_format: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info: Box::new(glue::table::SerdeInfo! {
                        serialization_library: "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                    }),
                }),
            },
        },
    );
    stack.depends_on(&logical, database);
    logical
}

/// Athena's workgroup for the lake: results in the bucket (expiring), and a
/// cap on what one query may scan.
fn athena_workgroup(stack: &mut Stack, bucket: &LakeBucket) {
    let output =
        join("", [ExpString::from("s3://"), ExpString::from(&bucket.logical), "/athena-results/".into()]);
    stack.resource(
        "AthenaWorkGroup",
        athena::WorkGroup! {
            name: stack.name("lake").as_str(),
            description: "Queries over the Wenu lake",
            recursive_delete_option: true,
            work_group_configuration: athena::workgroup::WorkGroupConfiguration! {
                enforce_work_group_configuration: true,
                publish_cloud_watch_metrics_enabled: true,
                bytes_scanned_cutoff_per_query: 100_000_000_000i64,
                result_configuration: Box::new(athena::workgroup::ResultConfiguration! {
                    output_location: output,
                    encryption_configuration: Box::new(athena::workgroup::EncryptionConfiguration! {
                        encryption_option: "SSE_S3",
                    }),
                }),
            },
            tags: stack.tags(),
        },
    );
}

fn delivery_stream(
    stack: &mut Stack,
    stream: &Stream,
    bucket: &LakeBucket,
    decrypt: &Function,
    database_name: &str,
    table: &LogicalResourceName,
) -> LogicalResourceName {
    // Dynamic partitioning and format conversion both need buffers of at
    // least 64 MiB (Firehose's own limit, not the 1 MiB of plain delivery).
    let buffer_mib = stack.parameter(
        "LakeBufferMiB",
        json!({
            "Type": "Number",
            "Default": 128,
            "MinValue": 64,
            "MaxValue": 128,
            "Description": "Firehose buffer size before a Parquet file is written (MiB)",
        }),
    );
    let buffer_secs = stack.parameter(
        "LakeBufferSeconds",
        json!({
            "Type": "Number",
            "Default": if stack.stage.is_production() { 900 } else { 60 },
            "MinValue": 60,
            "MaxValue": 900,
            "Description": "Firehose buffer time before a Parquet file is written (seconds)",
        }),
    );

    let delivery_name = stack.name("lake");
    let log_group_name = format!("/aws/kinesisfirehose/{delivery_name}");
    let retention = if stack.stage.is_production() { 90 } else { 14 };
    let log_group = stack.resource(
        "LakeDeliveryLogGroup",
        logs::LogGroup! { log_group_name: log_group_name.as_str(), retention_in_days: retention, tags: stack.tags() },
    );
    let log_stream = stack.resource(
        "LakeDeliveryLogStream",
        logs::LogStream! { log_group_name: (&log_group), log_stream_name: "S3Delivery" },
    );

    let glue_arns = [
        iam::regional_arn("glue", "catalog"),
        iam::regional_arn("glue", &format!("database/{database_name}")),
        iam::regional_arn("glue", &format!("table/{database_name}/readings")),
    ];
    let role = iam::role(
        stack,
        "LakeDeliveryRole",
        "firehose.amazonaws.com",
        "Firehose: the stream through the decrypt function into the lake",
        vec![
            iam::allow(
                &[
                    "kinesis:DescribeStream",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                    "kinesis:ListShards",
                ],
                &[stream.arn()],
            ),
            iam::allow(
                &["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"],
                &[decrypt.arn(), sub(format!("${{{}.Arn}}:*", decrypt.logical.0))],
            ),
            iam::allow(
                &["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                &[bucket.arn()],
            ),
            iam::allow(
                &["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                &[bucket.objects("readings/*"), bucket.objects("processing-failed/*")],
            ),
            iam::allow(&["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"], &glue_arns),
            iam::allow(&["logs:PutLogEvents"], &[sub(format!("${{{}.Arn}}", log_group.0))]),
        ],
    );

    let prefix = PARTITION_KEYS
        .iter()
        .map(|key| format!("{key}=!{{partitionKeyFromLambda:{key}}}/"))
        .collect::<String>();
    let processor_parameter = |name: &str, value: ExpString| {
        firehose::deliverystream::ProcessorParameter! {
            parameter_name: name,
            parameter_value: value,
        }
    };
    let destination = firehose::deliverystream::ExtendedS3DestinationConfiguration! {
        bucket_arn: bucket.arn(),
        role_arn: arn(&role),
        prefix: format!("readings/{prefix}").as_str(),
        error_output_prefix: "processing-failed/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/",
        file_extension: ".parquet",
        compression_format: "UNCOMPRESSED",
        buffering_hints: Box::new(firehose::deliverystream::BufferingHints! { size_in_m_bs: 128, interval_in_seconds: 60 }),
        cloud_watch_logging_options: Box::new(firehose::deliverystream::CloudWatchLoggingOptions! {
            enabled: true,
            log_group_name: (&log_group),
            log_stream_name: (&log_stream),
        }),
        processing_configuration: Box::new(firehose::deliverystream::ProcessingConfiguration! {
            enabled: true,
            processors: vec![firehose::deliverystream::Processor! {
                r#type: "Lambda",
                parameters: vec![
                    processor_parameter("LambdaArn", decrypt.arn()),
                    processor_parameter("NumberOfRetries", "3".into()),
                    processor_parameter("BufferSizeInMBs", "1".into()),
                    processor_parameter("BufferIntervalInSeconds", "60".into()),
                ],
            }],
        }),
        dynamic_partitioning_configuration: Box::new(firehose::deliverystream::DynamicPartitioningConfiguration! {
            enabled: true,
            retry_options: Box::new(firehose::deliverystream::RetryOptions! { duration_in_seconds: 300 }),
        }),
        data_format_conversion_configuration: Box::new(firehose::deliverystream::DataFormatConversionConfiguration! {
            enabled: true,
            // `ts` and `received_at` are unix milliseconds in the rows.
            input_format_configuration: Box::new(firehose::deliverystream::InputFormatConfiguration! {
                deserializer: Box::new(firehose::deliverystream::Deserializer! {
                    hive_json_ser_de: Box::new(firehose::deliverystream::HiveJsonSerDe! {
                        timestamp_formats: vec!["millis".into()],
                    }),
                }),
            }),
            output_format_configuration: Box::new(firehose::deliverystream::OutputFormatConfiguration! {
                serializer: Box::new(firehose::deliverystream::Serializer! {
                    parquet_ser_de: Box::new(firehose::deliverystream::ParquetSerDe! { compression: "SNAPPY" }),
                }),
            }),
            schema_configuration: Box::new(firehose::deliverystream::SchemaConfiguration! {
                catalog_id: AWS_ACCOUNT_ID,
                database_name: database_name,
                table_name: "readings",
                region: stratosphere::value::AWS_REGION,
                role_arn: arn(&role),
                version_id: "LATEST",
            }),
        }),
    };
    let logical = stack.resource(
        "LakeDeliveryStream",
        firehose::DeliveryStream! {
            delivery_stream_name: delivery_name.as_str(),
            delivery_stream_type: "KinesisStreamAsSource",
            kinesis_stream_source_configuration: firehose::deliverystream::KinesisStreamSourceConfiguration! {
                kinesis_stream_arn: stream.arn(),
                role_arn: arn(&role),
            },
            extended_s3_destination_configuration: destination,
            tags: stack.tags(),
        },
    );
    stack.set(&logical, "/ExtendedS3DestinationConfiguration/BufferingHints/SizeInMBs", buffer_mib.value());
    stack.set(
        &logical,
        "/ExtendedS3DestinationConfiguration/BufferingHints/IntervalInSeconds",
        buffer_secs.value(),
    );
    stack.depends_on(&logical, table);
    logical
}
