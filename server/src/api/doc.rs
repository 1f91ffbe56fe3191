//! The OpenAPI 3.1 document, generated from the handlers' own annotations and types (utoipa): the
//! routes, their parameters with every constraint the server enforces, and every status they answer.
//! Served at `GET /openapi.json`; checked from outside by schemathesis (tests/it/http.rs).

use std::collections::BTreeMap;

use utoipa::{
    IntoResponses, Modify, OpenApi, ToSchema,
    openapi::{
        Content, RefOr, Response, ResponseBuilder,
        schema::Ref,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

/// The document's frame: title, servers, the shared schemas and the bearer scheme; the paths come from
/// the router ([`super::router`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Peruri Custody API",
        description = "Custodial keys and ERC-4337 smart accounts. Every error is \
            {\"error\":{\"code\",\"message\"}} with a stable code. Creating calls take an Idempotency-Key: the \
            same key and body replays the first answer at any later time (a concurrent twin waits for it); \
            the same key with another body is a 422.",
    ),
    servers((url = "http://127.0.0.1:8080", description = "custody devnet")),
    components(schemas(ErrorBody)),
    modifiers(&Bearer),
)]
pub(crate) struct ApiDoc;

/// The JWT bearer scheme.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = Http::builder()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format(
                "JWT (ES256, RS256 or EdDSA; iss, aud, exp, nbf checked; roles: app, officer, auditor, user)",
            )
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every error answer: `{"error":{"code","message"}}`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "the schema of ApiError's JSON")]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code, reason = "the schema of ApiError's JSON")]
struct ErrorDetail {
    /// Stable, e.g. `invalid_user_id`, `idempotency_key_reused`.
    code: String,
    /// For people; a 5xx carries no internal detail.
    message: String,
}

/// The `Idempotency-Key` header of a creating call.
#[derive(utoipa::IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
#[allow(dead_code, reason = "read by idempotency::key; declared here for the document")]
pub(crate) struct IdempotencyKey(
    /// 1 to 128 printable ASCII characters, unique per logical operation and caller.
    #[param(pattern = "^[\\x21-\\x7e]{1,128}$", min_length = 1, max_length = 128)]
    String,
);

/// An error response with `description`.
fn error(description: &str) -> RefOr<Response> {
    let content = Content::new(Some(Ref::from_schema_name("ErrorBody")));
    ResponseBuilder::new().description(description).content("application/json", content).build().into()
}

/// What every authenticated call can answer besides its own results.
fn refusals() -> BTreeMap<String, RefOr<Response>> {
    [
        ("400", "Bad input: the code and message say which field and why."),
        ("401", "No token, or a token that does not verify."),
        ("403", "The token lacks the role this call needs."),
        ("408", "The request took longer than the server's request timeout."),
        ("429", "Over the per-client rate limit (Retry-After says when to come back)."),
        ("503", "A dependency (database, HSM, audit trail, wallets) is unavailable; retry later."),
    ]
    .into_iter()
    .map(|(status, description)| (status.to_owned(), error(description)))
    .collect()
}

/// The refusals of a read.
pub(crate) struct Reads;

impl IntoResponses for Reads {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut all = refusals();
        all.insert("404".into(), error("Not found."));
        all
    }
}

/// The refusals of a creating call (JSON body, Idempotency-Key).
pub(crate) struct Writes;

impl IntoResponses for Writes {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut all = Reads::responses();
        for (status, description) in [
            ("409", "A request with this Idempotency-Key is still in progress (waited 8 s); retry for its answer."),
            ("413", "The body is over the size limit."),
            ("415", "The body is not Content-Type: application/json."),
            (
                "422",
                "Well-formed but not acceptable: the Idempotency-Key was used with another body \
                 (idempotency_key_reused), or a value is out of range (out_of_range).",
            ),
        ] {
            all.insert(status.into(), error(description));
        }
        all
    }
}
