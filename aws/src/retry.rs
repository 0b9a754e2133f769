//! Backoff for the retries the adapters do themselves: the entries of a
//! batch call that AWS failed one by one (Kinesis `PutRecords`, DynamoDB
//! `UnprocessedItems`, SQS `SendMessageBatch`). Whole-call throttling is the
//! SDK's own retry layer's job.

use std::time::Duration;

use wenu_core::{Error, Result};

/// Exponential backoff with full jitter, as AWS recommends, for a bounded
/// number of attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    max_attempts: u32,
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { attempt: 0, max_attempts: 10, base: Duration::from_millis(50), cap: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// Waits before the next attempt, or returns `exhausted` when the
    /// attempts are used up.
    pub async fn wait(&mut self, call: &str, exhausted: Error) -> Result<()> {
        self.attempt += 1;
        if self.attempt >= self.max_attempts {
            tracing::warn!(call, attempts = self.attempt, "partial failures did not clear; giving up");
            return Err(exhausted);
        }
        let ceiling = self.base.saturating_mul(1 << self.attempt.min(16)).min(self.cap);
        let delay = ceiling.mul_f64(rand::random::<f64>());
        tracing::debug!(
            call,
            attempt = self.attempt,
            delay_ms = delay.as_millis() as u64,
            "retrying failed entries"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Attempts so far that were followed by a wait.
    pub fn retries(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_attempt() {
        let mut backoff = Backoff::default();
        let exhausted = || Error::Queue { message: "still failing".into(), retryable: true };
        for _ in 1..10 {
            backoff.wait("test", exhausted()).await.unwrap();
        }
        let err = backoff.wait("test", exhausted()).await.unwrap_err();
        assert!(err.is_retryable(), "the caller may try the whole call again later");
    }
}
