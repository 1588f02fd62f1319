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
    /// The host name resolved to an address the destination policy refuses.
    Blocked,
}

/// What happens to a delivery after an attempt of a given class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Delivered,
    /// Try again later, on the retry tiers.
    Retry,
    /// Never try again: dead-letter it. `disable_endpoint` for `410 Gone`.
    Permanent {
        disable_endpoint: bool,
    },
}

/// Which failures the operator treats as permanent rather than retryable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailurePolicy {
    pub dns_errors_permanent: bool,
    pub tls_errors_permanent: bool,
}

/// Retryable: 5xx, 408, 425, 429, timeouts, network errors, and DNS and TLS errors unless
/// configured permanent. Permanent: other 4xx, 3xx (redirects are not followed), refused
/// destinations and unavailable endpoints. `410 Gone` also disables the endpoint.
pub fn disposition(class: AttemptClass, policy: FailurePolicy) -> Disposition {
    use AttemptClass::*;
    match class {
        Http2xxDelivered => Disposition::Delivered,
        Http5xxRetryable | Http4xxRetryable | RateLimited | Timeout | NetworkError => {
            Disposition::Retry
        }
        DnsError if !policy.dns_errors_permanent => Disposition::Retry,
        TlsError if !policy.tls_errors_permanent => Disposition::Retry,
        Gone => Disposition::Permanent {
            disable_endpoint: true,
        },
        DnsError | TlsError | Http4xxPermanent | Redirect | DestinationBlocked
        | EndpointUnavailable => Disposition::Permanent {
            disable_endpoint: false,
        },
    }
}

/// The class of an answered request, by HTTP status. Redirects are not followed.
pub fn classify_status(status: u16) -> AttemptClass {
    match status {
        200..=299 => AttemptClass::Http2xxDelivered,
        300..=399 => AttemptClass::Redirect,
        410 => AttemptClass::Gone,
        429 => AttemptClass::RateLimited,
        408 | 425 => AttemptClass::Http4xxRetryable,
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
        TransportFailure::Blocked => AttemptClass::DestinationBlocked,
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
            (408, AttemptClass::Http4xxRetryable),
            (425, AttemptClass::Http4xxRetryable),
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
    fn each_class_is_retried_or_not_as_the_policy_says() {
        use AttemptClass::*;
        let default = FailurePolicy::default();
        for class in [
            Http5xxRetryable,
            Http4xxRetryable,
            RateLimited,
            Timeout,
            NetworkError,
            DnsError,
            TlsError,
        ] {
            assert_eq!(disposition(class, default), Disposition::Retry, "{class:?}");
        }
        for class in [
            Http4xxPermanent,
            Redirect,
            DestinationBlocked,
            EndpointUnavailable,
        ] {
            assert_eq!(
                disposition(class, default),
                Disposition::Permanent {
                    disable_endpoint: false
                },
                "{class:?}"
            );
        }
        assert_eq!(
            disposition(Gone, default),
            Disposition::Permanent {
                disable_endpoint: true
            }
        );
        assert_eq!(
            disposition(Http2xxDelivered, default),
            Disposition::Delivered
        );
    }

    #[test]
    fn dns_and_tls_errors_can_be_made_permanent() {
        let strict = FailurePolicy {
            dns_errors_permanent: true,
            tls_errors_permanent: true,
        };
        let permanent = Disposition::Permanent {
            disable_endpoint: false,
        };
        assert_eq!(disposition(AttemptClass::DnsError, strict), permanent);
        assert_eq!(disposition(AttemptClass::TlsError, strict), permanent);
        assert_eq!(
            disposition(AttemptClass::Timeout, strict),
            Disposition::Retry
        );
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
