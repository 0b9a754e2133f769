//! The registry (devices, companies, sites, sensors, tokens, rules):
//! PostgreSQL on RDS in the private subnets, reachable only from the
//! functions' security group, its master password generated and rotated by
//! RDS in Secrets Manager. And the device keys: secrets under
//! `wenu/{stage}/device-keys/`, which only the functions that open readings
//! may read and only the API (provisioning, rotation) may write.

use serde_json::json;
use stratosphere::services::aws::{ec2, rds};
use stratosphere::template::LogicalResourceName;
use stratosphere::value::{ExpString, get_att, join};

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
            &["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:TagResource"],
            &[self.keys_arn()],
        )]
    }
}
