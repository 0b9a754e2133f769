//! The registry (devices, companies, sites, sensors, tokens, rules):
//! PostgreSQL on RDS in the private subnets, reachable only from the
//! functions' security group, its master password generated and rotated by
//! RDS in Secrets Manager. And the device keys: secrets under
//! `wenu/{stage}/device-keys/`, encrypted with a KMS key of their own whose
//! policy lets only the functions that open readings decrypt them, and only
//! the API (provisioning, rotation) and an optional operator write them.

use serde_json::json;
use stratosphere::services::aws::{ec2, kms, rds};
use stratosphere::template::LogicalResourceName;
use stratosphere::value::{ExpString, get_att, join};

use crate::functions::Function;
use crate::iam;
use crate::network::Network;
use crate::stack::{Stack, sub};

pub struct Registry {
    pub database: LogicalResourceName,
    pub keys_prefix: String,
}

pub fn registry(stack: &mut Stack, network: &Network) -> Registry {
    let production = stack.stage.is_production();
    let instance_class = stack.parameter(
        "RegistryInstanceClass",
        json!({
            "Type": "String",
            "Default": if production { "db.t4g.medium" } else { "db.t4g.micro" },
            "AllowedPattern": "^db\\.[a-z0-9]+\\.[a-z0-9]+$",
            "Description": "RDS instance class of the registry database",
        }),
    );
    let security_group = stack.resource(
        "RegistrySecurityGroup",
        ec2::SecurityGroup! {
            group_description: "Wenu registry database: PostgreSQL from the functions only",
            vpc_id: (&network.vpc),
            security_group_ingress: vec![ec2::securitygroup::Ingress! {
                ip_protocol: "tcp",
                from_port: 5432,
                to_port: 5432,
                source_security_group_id: (&network.functions_security_group),
                description: "the functions' network interfaces",
            }],
            tags: stack.tags(),
        },
    );
    let subnets = stack.resource(
        "RegistrySubnets",
        rds::DBSubnetGroup! {
            db_subnet_group_description: "Wenu registry: the private subnets",
            subnet_ids: network.private_subnets.iter().map(ExpString::from).collect::<Vec<_>>(),
            tags: stack.tags(),
        },
    );
    let database = stack.resource(
        "RegistryDatabase",
        rds::DBInstance! {
            engine: "postgres",
            engine_version: "17.6",
            db_instance_class: instance_class.exp(),
            db_name: "wenu",
            master_username: "wenu",
            manage_master_user_password: true,
            allocated_storage: "20",
            max_allocated_storage: 200,
            storage_type: "gp3",
            storage_encrypted: true,
            multi_az: production,
            deletion_protection: production,
            backup_retention_period: if production { 14 } else { 1 },
            copy_tags_to_snapshot: true,
            auto_minor_version_upgrade: true,
            publicly_accessible: false,
            db_subnet_group_name: (&subnets),
            vpc_security_groups: vec![ExpString::from(&security_group)],
            tags: stack.tags(),
        },
    );
    stack.keep_on_delete(&database, "Snapshot");
    stack.output(
        "RegistrySecretArn",
        "The registry's master credentials (Secrets Manager, rotated by RDS)",
        sub("${RegistryDatabase.MasterUserSecret.SecretArn}"),
    );
    stack.output(
        "RegistryEndpoint",
        "The registry database's host name",
        get_att(&database, "Endpoint.Address"),
    );
    Registry { database, keys_prefix: format!("wenu/{}/device-keys", stack.stage.name()) }
}

impl Registry {
    /// The environment every function that reads the registry gets: where
    /// the database is (without credentials), the secret its credentials
    /// are in, and where the device keys are.
    pub fn environment(&self) -> Vec<(&'static str, ExpString)> {
        let url = join(
            "",
            [
                "postgres://".into(),
                get_att(&self.database, "Endpoint.Address"),
                ":".into(),
                get_att(&self.database, "Endpoint.Port"),
                "/wenu?sslmode=require".into(),
            ],
        );
        vec![
            ("WENU_REGISTRY_URL", url),
            ("WENU_REGISTRY_SECRET_ARN", self.credentials_arn()),
            ("WENU_KEYS_SECRET_PREFIX", self.keys_prefix.as_str().into()),
        ]
    }

    fn credentials_arn(&self) -> ExpString {
        sub(format!("${{{}.MasterUserSecret.SecretArn}}", self.database.0))
    }

    /// Reading the registry's credentials.
    pub fn read_statements(&self) -> Vec<serde_json::Value> {
        vec![iam::allow(&["secretsmanager:GetSecretValue"], &[self.credentials_arn()])]
    }

    /// The KMS key the device-key secrets are encrypted with.
    pub fn keys_kms_key(&self) -> ExpString {
        get_att(KEYS_KMS_KEY, "Arn")
    }

    fn keys_arn(&self) -> ExpString {
        iam::regional_arn("secretsmanager", &format!("secret:{}/*", self.keys_prefix))
    }

    /// Reading the device keys (decrypt, enrich, alarms).
    pub fn keys_read_statements(&self) -> Vec<serde_json::Value> {
        vec![
            iam::allow(
                &["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                &[self.keys_arn()],
            ),
            iam::allow_unscoped(&["secretsmanager:ListSecrets", "secretsmanager:BatchGetSecretValue"]),
        ]
    }

    /// Provisioning and rotating device keys (the API).
    pub fn keys_write_statements(&self) -> Vec<serde_json::Value> {
        vec![iam::allow(
            &[
                "secretsmanager:CreateSecret",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecretVersionStage",
                "secretsmanager:TagResource",
            ],
            &[self.keys_arn()],
        )]
    }
}

const KEYS_KMS_KEY: &str = "DeviceKeysKey";

/// The KMS key of the device keys. Its policy, not IAM, says who may use
/// it: the account administers it (and could change the policy, which
/// CloudTrail records) but cannot decrypt with it; `readers` decrypt through
/// Secrets Manager only; `writer` and the optional `KeyOperatorArn` (who
/// runs `wenu devices provision --aws`) also encrypt new secrets.
pub fn device_keys_key(stack: &mut Stack, readers: &[&Function], writer: &Function) {
    let operator = stack.parameter(
        "KeyOperatorArn",
        json!({
            "Type": "String",
            "Default": "",
            "Description": "IAM role or user allowed to provision devices with the CLI (empty: only through the API)",
        }),
    );
    let has_operator = stack.condition(
        "HasKeyOperator",
        stratosphere::value::ExpBool::Not(Box::new(stratosphere::value::equals_string(operator.exp(), ""))),
    );
    let role_arn = |function: &Function| crate::stack::value(&crate::stack::arn(&function.role));
    let through_secrets_manager = json!({ "StringEquals": { "kms:ViaService": crate::stack::value(&sub("secretsmanager.${AWS::Region}.amazonaws.com")) } });
    let write = ["kms:GenerateDataKey", "kms:Decrypt"];
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Administration",
                "Effect": "Allow",
                "Principal": { "AWS": crate::stack::value(&sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")) },
                "Action": [
                    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                    "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                    "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
                ],
                "Resource": "*",
            },
            {
                "Sid": "ReadDeviceKeys",
                "Effect": "Allow",
                "Principal": { "AWS": readers.iter().map(|f| role_arn(f)).collect::<Vec<_>>() },
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": through_secrets_manager,
            },
            {
                "Sid": "WriteDeviceKeys",
                "Effect": "Allow",
                "Principal": { "AWS": role_arn(writer) },
                "Action": write,
                "Resource": "*",
                "Condition": through_secrets_manager,
            },
            { "Fn::If": [
                has_operator.to_string(),
                {
                    "Sid": "ProvisionFromTheCli",
                    "Effect": "Allow",
                    "Principal": { "AWS": operator.value() },
                    "Action": write,
                    "Resource": "*",
                    "Condition": through_secrets_manager,
                },
                { "Ref": "AWS::NoValue" },
            ] },
        ],
    });
    let key = stack.resource(
        KEYS_KMS_KEY,
        kms::Key! {
            description: format!("{}: device keys in Secrets Manager", stack.name("device-keys")).as_str(),
            enable_key_rotation: true,
            pending_window_in_days: 7,
            key_policy: policy,
            tags: stack.tags(),
        },
    );
    stack.keep_on_delete(&key, "Retain");
    stack.resource(
        "DeviceKeysKeyAlias",
        kms::Alias! {
            alias_name: format!("alias/{}", stack.name("device-keys")).as_str(),
            target_key_id: ExpString::from(&key),
        },
    );
    stack.output(
        "DeviceKeysKeyArn",
        "The KMS key of the device-key secrets (aws.keys_kms_key)",
        get_att(&key, "Arn"),
    );
}
