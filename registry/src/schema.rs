//! The registry schema, as an append-only list of migrations run by sqlx's
//! migrator. Never edit a migration that has shipped: add a new one.
//!
//! The SQL is written once for SQLite and PostgreSQL: `TEXT`, `BIGINT`,
//! `DOUBLE PRECISION` and `BOOLEAN` columns, `ON CONFLICT` upserts, no
//! engine-specific functions.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "companies devices keys",
        // `IF NOT EXISTS`: registries created before sqlx already hold these tables.
        "CREATE TABLE IF NOT EXISTS companies (
            id         TEXT   PRIMARY KEY,
            created_at BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS devices (
            id            TEXT    PRIMARY KEY,
            company_id    TEXT    NOT NULL REFERENCES companies (id),
            password_hash TEXT    NOT NULL,
            enabled       BOOLEAN NOT NULL DEFAULT TRUE,
            created_at    BIGINT  NOT NULL
        );
        CREATE INDEX IF NOT EXISTS devices_by_company ON devices (company_id);
        CREATE TABLE IF NOT EXISTS device_keys (
            device_id  TEXT   NOT NULL REFERENCES devices (id),
            key_id     BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            retired_at BIGINT,
            PRIMARY KEY (device_id, key_id)
        );",
    ),
    (
        2,
        "sites sensors company settings revision",
        "CREATE TABLE sites (
            company_id TEXT   NOT NULL REFERENCES companies (id),
            id         TEXT   NOT NULL,
            name       TEXT   NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (company_id, id)
        );
        ALTER TABLE devices ADD COLUMN site_id TEXT;
        CREATE TABLE sensors (
            device_id  TEXT             NOT NULL REFERENCES devices (id),
            name       TEXT             NOT NULL,
            kind       TEXT             NOT NULL,
            unit       TEXT             NOT NULL,
            scale      DOUBLE PRECISION NOT NULL DEFAULT 1,
            ofs        DOUBLE PRECISION NOT NULL DEFAULT 0,
            valid_min  DOUBLE PRECISION,
            valid_max  DOUBLE PRECISION,
            updated_at BIGINT           NOT NULL,
            PRIMARY KEY (device_id, name)
        );
        CREATE TABLE company_settings (
            company_id                  TEXT   PRIMARY KEY REFERENCES companies (id),
            stats_retention_minute_days BIGINT,
            stats_retention_hour_days   BIGINT,
            stats_retention_day_days    BIGINT
        );
        CREATE TABLE revision (
            id    BIGINT PRIMARY KEY,
            value BIGINT NOT NULL
        );
        INSERT INTO revision (id, value) VALUES (1, 1);",
    ),
    (
        3,
        "api tokens audit log",
        // Audit entries are keyed by the revision their change made: unique,
        // ordered, and assigned the same way on both engines.
        "CREATE TABLE api_tokens (
            id              TEXT   PRIMARY KEY,
            company_id      TEXT   REFERENCES companies (id),
            role            TEXT   NOT NULL,
            name            TEXT   NOT NULL,
            secret_sha256   TEXT   NOT NULL,
            rate_per_second BIGINT,
            created_at      BIGINT NOT NULL,
            revoked_at      BIGINT
        );
        CREATE INDEX api_tokens_by_company ON api_tokens (company_id);
        CREATE TABLE audit_log (
            revision   BIGINT PRIMARY KEY,
            at         BIGINT NOT NULL,
            actor      TEXT   NOT NULL,
            action     TEXT   NOT NULL,
            company_id TEXT,
            target     TEXT   NOT NULL,
            detail     TEXT   NOT NULL
        );
        CREATE INDEX audit_log_by_company ON audit_log (company_id, revision);",
    ),
    (
        4,
        "alarm rules webhooks",
        // A rule's condition is JSON (`wenu_alarms::Condition`): its kinds
        // and parameters evolve without a migration each.
        "CREATE TABLE alarm_rules (
            company_id TEXT    NOT NULL REFERENCES companies (id),
            id         TEXT    NOT NULL,
            name       TEXT    NOT NULL,
            device_id  TEXT    REFERENCES devices (id),
            sensor     TEXT,
            condition  TEXT    NOT NULL,
            severity   TEXT    NOT NULL,
            enabled    BOOLEAN NOT NULL,
            updated_at BIGINT  NOT NULL,
            PRIMARY KEY (company_id, id)
        );
        CREATE TABLE webhooks (
            id         TEXT   PRIMARY KEY,
            company_id TEXT   NOT NULL REFERENCES companies (id),
            url        TEXT   NOT NULL,
            secret     TEXT   NOT NULL,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX webhooks_by_company ON webhooks (company_id);",
    ),
    (
        5,
        "device publish quotas",
        // NULL: the edge's configured defaults.
        "ALTER TABLE devices ADD COLUMN publishes_per_second BIGINT;
        ALTER TABLE devices ADD COLUMN bytes_per_second BIGINT;",
    ),
    (
        6,
        "sequence resets revoked certificates",
        // `seq_reset_at`: records that arrive from then on (unix ms) start a
        // fresh sequence window (a device whose counter went back to 0).
        "ALTER TABLE devices ADD COLUMN seq_reset_at BIGINT;
        CREATE TABLE revoked_certificates (
            fingerprint TEXT   PRIMARY KEY,
            device_id   TEXT   NOT NULL REFERENCES devices (id),
            revoked_at  BIGINT NOT NULL
        );",
    ),
    (
        7,
        "device downlink and state",
        // `revision`: the registry revision of the change, so the edge can
        // ask for what changed since it last looked. `device_state` is
        // written by the edge and by devices, outside the revision.
        "CREATE TABLE device_config (
            device_id  TEXT   PRIMARY KEY REFERENCES devices (id),
            version    BIGINT NOT NULL,
            document   TEXT   NOT NULL,
            updated_at BIGINT NOT NULL,
            revision   BIGINT NOT NULL
        );
        CREATE INDEX device_config_by_revision ON device_config (revision);
        CREATE TABLE device_commands (
            id           TEXT   PRIMARY KEY,
            device_id    TEXT   NOT NULL REFERENCES devices (id),
            name         TEXT   NOT NULL,
            args         TEXT   NOT NULL,
            created_at   BIGINT NOT NULL,
            expires_at   BIGINT NOT NULL,
            status       TEXT   NOT NULL,
            delivered_at BIGINT,
            finished_at  BIGINT,
            detail       TEXT,
            revision     BIGINT NOT NULL
        );
        CREATE INDEX device_commands_by_device ON device_commands (device_id, revision);
        CREATE INDEX device_commands_by_revision ON device_commands (revision);
        CREATE TABLE device_state (
            device_id              TEXT    PRIMARY KEY REFERENCES devices (id),
            online                 BOOLEAN NOT NULL,
            connected_at           BIGINT,
            disconnected_at        BIGINT,
            last_seen_at           BIGINT,
            firmware               TEXT,
            boot                   BIGINT,
            applied_config_version BIGINT,
            reported_at            BIGINT
        );",
    ),
    (
        8,
        "webhook formats",
        // `wenu` (signed notification JSON), `slack` or `teams`.
        "ALTER TABLE webhooks ADD COLUMN format TEXT NOT NULL DEFAULT 'wenu';",
    ),
    (
        9,
        "notification channels and silences",
        // Webhooks become channels (`mailto:` URLs are e-mail channels); a
        // channel's routing is JSON (`wenu_alarms::Route`). A silence names
        // any of a device, a site and a rule; it is ended early by moving
        // `ends_at`, never deleted, so the record of it stays.
        "ALTER TABLE webhooks RENAME TO channels;
        ALTER TABLE channels ADD COLUMN route TEXT NOT NULL DEFAULT '{}';
        CREATE TABLE silences (
            id         TEXT   PRIMARY KEY,
            company_id TEXT   NOT NULL REFERENCES companies (id),
            device_id  TEXT,
            site       TEXT,
            rule_id    TEXT,
            starts_at  BIGINT NOT NULL,
            ends_at    BIGINT NOT NULL,
            reason     TEXT   NOT NULL,
            created_by TEXT   NOT NULL,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX silences_by_company ON silences (company_id, ends_at);",
    ),
];

pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}
