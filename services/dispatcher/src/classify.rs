//! What an attempt's outcome means: one [`AttemptClass`] per attempt.

use hookstream_model::delivery::AttemptClass;

/// How a request failed before any HTTP status came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    Timeout,
    Dns,
    Tls,
    /// Refused, reset, or any other connection failure.
    Network,
}

/// The class of an answered request, by HTTP status. Redirects are not followed.
pub fn classify_status(status: u16) -> AttemptClass {
    match status {
        200..=299 => AttemptClass::Http2xxDelivered,
        300..=399 => AttemptClass::Redirect,
        410 => AttemptClass::Gone,
        429 => AttemptClass::RateLimited,
        400..=499 => AttemptClass::Http4xxPermanent,
        _ => AttemptClass::Http5xxRetryable,
    }
}

/// The class of a request that got no HTTP status.
pub fn classify_failure(failure: TransportFailure) -> AttemptClass {
    match failure {
        TransportFailure::Timeout => AttemptClass::Timeout,
        TransportFailure::Dns => AttemptClass::DnsError,
        TransportFailure::Tls => AttemptClass::TlsError,
        TransportFailure::Network => AttemptClass::NetworkError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        let cases = [
            (200, AttemptClass::Http2xxDelivered),
            (204, AttemptClass::Http2xxDelivered),
            (299, AttemptClass::Http2xxDelivered),
            (301, AttemptClass::Redirect),
            (308, AttemptClass::Redirect),
            (400, AttemptClass::Http4xxPermanent),
            (404, AttemptClass::Http4xxPermanent),
            (410, AttemptClass::Gone),
            (429, AttemptClass::RateLimited),
            (500, AttemptClass::Http5xxRetryable),
            (503, AttemptClass::Http5xxRetryable),
        ];
        for (status, class) in cases {
            assert_eq!(classify_status(status), class, "{status}");
        }
    }

    #[test]
    fn transport_failures_map_to_classes() {
        assert_eq!(
            classify_failure(TransportFailure::Timeout),
            AttemptClass::Timeout
        );
        assert_eq!(
            classify_failure(TransportFailure::Dns),
            AttemptClass::DnsError
        );
        assert_eq!(
            classify_failure(TransportFailure::Tls),
            AttemptClass::TlsError
        );
        assert_eq!(
            classify_failure(TransportFailure::Network),
            AttemptClass::NetworkError
        );
    }
}
