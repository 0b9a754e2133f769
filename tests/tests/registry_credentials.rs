//! The functions' registry URL on AWS: the template gives them the
//! database's address and the secret RDS keeps (and rotates) its master
//! credentials in; they put the credentials into the URL at start. On moto.

use wenu_lambdas::settings::with_credentials;
use wenu_tests::moto::{moto, unique_name};

async fn secret(text: &str) -> (aws_sdk_secretsmanager::Client, String) {
    let client = aws_sdk_secretsmanager::Client::new(&moto().sdk_config().await);
    let created =
        client.create_secret().name(unique_name("rds-master")).secret_string(text).send().await.unwrap();
    (client, created.arn().unwrap().to_owned())
}

#[tokio::test]
async fn the_credentials_go_into_the_url_escaped() {
    // RDS generates passwords with punctuation that means something in a URL.
    let password = "p@ss:w/rd?#%41&x";
    let (client, arn) =
        secret(&serde_json::json!({ "username": "wenu", "password": password }).to_string()).await;
    let url =
        with_credentials(&client, "postgres://db.internal:5432/wenu?sslmode=require", &arn).await.unwrap();

    let parsed = url::Url::parse(&url).unwrap();
    assert_eq!(parsed.username(), "wenu");
    assert_eq!(percent_decoded(parsed.password().unwrap()), password);
    assert_eq!(parsed.host_str(), Some("db.internal"));
    assert_eq!(parsed.port(), Some(5432));
    assert_eq!(parsed.path(), "/wenu");
    assert_eq!(parsed.query(), Some("sslmode=require"));
}

#[tokio::test]
async fn a_secret_that_is_not_credentials_is_named_but_never_shown() {
    let (client, arn) = secret("hunter2-not-json").await;
    let error = with_credentials(&client, "postgres://db.internal/wenu", &arn).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&arn), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let missing =
        with_credentials(&client, "postgres://db.internal/wenu", "no-such-secret").await.unwrap_err();
    assert!(format!("{missing:#}").contains("reading the registry credentials from no-such-secret"));
}

/// What a database driver reads back from a URL's userinfo.
fn percent_decoded(text: &str) -> String {
    let mut bytes = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            bytes.push(u8::from_str_radix(std::str::from_utf8(&tail[..2]).unwrap(), 16).unwrap());
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).unwrap()
}
