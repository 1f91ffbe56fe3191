//! OpenAPI schemas of the account types that are not derived: the DID and the user id, each with the
//! constraint its parser enforces, stated here once.

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, schema::Type},
};

use crate::Did;

/// `did:peruri:` and 32 lowercase base32 characters ([`Did`]'s `FromStr`).
pub const DID_PATTERN: &str = "^did:peruri:[a-z2-7]{32}$";

/// 1 to 256 characters, none a control character (`char::is_control`: C0, DEL and C1).
pub const USER_ID_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$";

/// The schema of an app's user id (a `String` field carries it with `#[schema(value_type = UserId)]`).
#[derive(Debug)]
pub struct UserId;

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        let text = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(256));
        text.pattern(Some(USER_ID_PATTERN))
            .description(Some("The app's user id: 1 to 256 characters, no control characters."))
            .into()
    }
}

impl ToSchema for UserId {}

impl PartialSchema for Did {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).pattern(Some(DID_PATTERN)).into()
    }
}

impl ToSchema for Did {}

/// A checksummed Ethereum address (a `String`-serialized `Address` field carries it).
#[derive(Debug)]
pub struct AddressText;

impl PartialSchema for AddressText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).pattern(Some("^0x[0-9a-fA-F]{40}$")).into()
    }
}

impl ToSchema for AddressText {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Address")
    }
}
