//! The stats function: SQS delivers batches of jobs from the FIFO jobs
//! queue; each job is folded into the stats table by the same handler the
//! embedded workers use, and the jobs that failed are reported back
//! (`ReportBatchItemFailures`), so only they return to the queue and, after
//! its max receive count, go to the dead-letter queue.
//!
//! On a FIFO queue a group must not move past a failure: once a job of a
//! series fails, the series' later jobs in the batch are reported failed
//! too. They may have been applied already; applying them again counts
//! nothing twice (rollups dedupe on device and sequence number).

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use wenu_stats::worker::Handler;
use wenu_stats::{Job, Result};

/// The attribute that marks a base64 body (set by `wenu_aws::SqsQueue`).
const ENCODING: &str = "encoding";

/// Applies a batch of jobs and names the messages to deliver again.
pub async fn handle_jobs(handler: &dyn Handler, event: SqsEvent) -> SqsBatchResponse {
    let parsed: Vec<Result<Job, String>> = event.records.iter().map(job_of).collect();
    let jobs: Vec<&Job> = parsed.iter().filter_map(|p| p.as_ref().ok()).collect();
    let mut applied = handler.handle_many(&jobs).await.into_iter();
    let mut failed_groups: HashSet<String> = HashSet::new();
    let mut failures = Vec::new();
    for (message, job) in event.records.iter().zip(&parsed) {
        let id = message.message_id.clone().unwrap_or_default();
        let group = message.attributes.get("MessageGroupId").cloned().unwrap_or_default();
        let outcome = match job {
            Ok(_) => applied.next().expect("a result per job").map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let failed = match outcome {
            Err(e) => {
                tracing::warn!(message = %id, group = %group, error = %e, "stats job failed; it will be delivered again");
                metrics::counter!("wenu_stats_jobs_total", "outcome" => "failed").increment(1);
                true
            }
            Ok(()) if failed_groups.contains(&group) => true,
            Ok(()) => {
                metrics::counter!("wenu_stats_jobs_total", "outcome" => "applied").increment(1);
                false
            }
        };
        if failed {
            failed_groups.insert(group);
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

fn job_of(message: &SqsMessage) -> Result<Job, String> {
    let body = message.body.as_deref().ok_or("message without a body")?;
    let base64 =
        message.message_attributes.get(ENCODING).and_then(|a| a.string_value.as_deref()) == Some("base64");
    let bytes = if base64 {
        BASE64.decode(body).map_err(|e| format!("body is not base64: {e}"))?
    } else {
        body.as_bytes().to_vec()
    };
    Job::from_bytes(&bytes).map_err(|e| e.to_string())
}
