//! How an AWS SDK failure maps onto the ports' error kinds.
//!
//! As object_store does for its backends: each failure becomes the port's
//! own error (`Error::Queue`, `Error::Table`, …) carrying whether the same
//! call may succeed later. The SDK already retries throttling and 5xx
//! responses a few times with backoff; what is still retryable when it
//! gives up goes back to the caller as retryable (a consumer backs off and
//! restarts from its checkpoint), everything else as permanent.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Error codes that mean "too fast" or "not now": trying later may succeed.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "SlowDown",
    "InternalFailure",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSThrottlingException",
    "TransactionInProgressException",
];

/// Whether a service error code means the call may succeed later.
pub fn is_retryable_code(code: &str) -> bool {
    RETRYABLE_CODES.contains(&code)
}

/// The message of an SDK failure and whether it may go away.
pub fn classify<E, R>(err: &SdkError<E, R>) -> (String, bool)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let retryable = match err {
        SdkError::ConstructionFailure(_) => false,
        // No answer, or an answer that could not be read: the network or
        // the service may be back in a moment.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => service.err().code().is_some_and(is_retryable_code),
        _ => false,
    };
    let message = match err {
        // The code and the service's message; the raw response stays out of logs.
        SdkError::ServiceError(service) => {
            let meta = service.err();
            format!("{}: {}", meta.code().unwrap_or("unknown error"), meta.message().unwrap_or_default())
        }
        other => DisplayErrorContext(other).to_string(),
    };
    (message, retryable)
}

/// The service's error code, if the failure got as far as an answer.
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_retryable_and_validation_is_not() {
        assert!(is_retryable_code("ProvisionedThroughputExceededException"));
        assert!(is_retryable_code("ThrottlingException"));
        assert!(!is_retryable_code("ValidationException"));
        assert!(!is_retryable_code("ResourceNotFoundException"));
    }
}
