//! The notifier port on SNS: each alarm transition is published once to
//! the deployment's topic, as JSON, with message attributes that
//! subscriptions filter on (`company`, `severity`, `change`). Operators
//! subscribe e-mail, SMS, a queue or a Lambda to it; a filter policy on
//! `company` gives each company only its own alarms.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use wenu_alarms::{Notification, Notifier, NotifyError};

use crate::error::classify;

/// Publishes notifications to one SNS topic.
#[derive(Clone, Debug)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        SnsNotifier { client, topic_arn: topic_arn.into() }
    }

    /// Creates the topic `name` if it does not exist, as the deployment
    /// template does; for development and tests.
    pub async fn create(client: Client, name: &str) -> Result<Self, NotifyError> {
        let output =
            client.create_topic().name(name).send().await.map_err(|e| notify_error("CreateTopic", &e))?;
        let arn = output.topic_arn().ok_or_else(|| NotifyError::permanent("CreateTopic returned no ARN"))?;
        Ok(SnsNotifier::new(client, arn))
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    fn kind(&self) -> &'static str {
        "sns"
    }

    async fn targets(&self, _notification: &Notification) -> Result<Vec<String>, NotifyError> {
        Ok(vec![self.topic_arn.clone()])
    }

    async fn send(&self, target: &str, notification: &Notification) -> Result<(), NotifyError> {
        let transition = &notification.transition;
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type is set")
        };
        let subject = format!(
            "[{}] {} on {}: {}",
            transition.severity.as_str(),
            transition.rule_name,
            transition.device,
            transition.change.as_str()
        );
        self.client
            .publish()
            .topic_arn(target)
            .subject(truncate(&subject, 100))
            .message(serde_json::to_string(notification).expect("a notification serializes"))
            .message_attributes("company", attribute(&transition.company))
            .message_attributes("severity", attribute(transition.severity.as_str()))
            .message_attributes("change", attribute(transition.change.as_str()))
            .message_attributes("notification_id", attribute(&notification.id))
            .send()
            .await
            .map(drop)
            .map_err(|e| notify_error("Publish", &e))
    }
}

/// SNS subjects are at most 100 characters, printable ASCII.
fn truncate(subject: &str, max: usize) -> String {
    subject.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(max).collect()
}

fn notify_error<E, R>(call: &str, err: &aws_sdk_sns::error::SdkError<E, R>) -> NotifyError
where
    E: aws_sdk_sns::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (message, retryable) = classify(err);
    NotifyError { message: format!("SNS {call}: {message}"), retryable }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_are_short_printable_ascii() {
        assert_eq!(super::truncate("[critical] température\n", 100), "[critical] temprature");
        assert_eq!(super::truncate(&"x".repeat(300), 100).len(), 100);
    }
}
