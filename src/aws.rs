//! One way to configure the AWS SDK clients (DynamoDB, Verified
//! Permissions): rustls with ring, the default credential chain, an
//! optional region and endpoint.

/// The SDK configuration for `region` and `endpoint`. A loopback endpoint
/// (DynamoDB Local, a local stand-in) gets dummy credentials unless some
/// are set in the environment, so nothing goes looking for an instance
/// metadata service.
pub async fn sdk_config(region: Option<&str>, endpoint: Option<&str>) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        if is_loopback(endpoint) && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                "cedargate-local",
            ));
        }
    }
    loader.load().await
}

/// Whether `endpoint` (a URL) names this machine.
pub fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint.split("://").nth(1).unwrap_or(endpoint);
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

/// An AWS SDK error as one line: `Code: message` when the service said
/// so, else the error's debug form (a connection failure and the like).
pub fn error_text<E>(e: &E) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(m)) => format!("{code}: {m}"),
        (Some(code), None) => code.to_string(),
        _ => format!("{e:?}"),
    }
}
