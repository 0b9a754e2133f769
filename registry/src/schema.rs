//! The registry schema, as an append-only list of migrations. Never edit a
//! migration that has shipped: add a new one.

use rusqlite_migration::{M, Migrations};

pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(
        "CREATE TABLE companies (
            id         TEXT    PRIMARY KEY,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE devices (
            id            TEXT    PRIMARY KEY,
            company_id    TEXT    NOT NULL REFERENCES companies (id),
            password_hash TEXT    NOT NULL,
            enabled       INTEGER NOT NULL DEFAULT 1,
            created_at    INTEGER NOT NULL
        );
        CREATE INDEX devices_by_company ON devices (company_id);
        CREATE TABLE device_keys (
            device_id  TEXT    NOT NULL REFERENCES devices (id),
            key_id     INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            retired_at INTEGER,
            PRIMARY KEY (device_id, key_id)
        );",
    )])
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }
}
