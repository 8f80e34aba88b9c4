//! The OpenAPI schemas of core's API types whose JSON is written by a serde impl of their own
//! (so no derive can see it): the [`Symbol`] and a decision's [`Explanation`]. The other
//! request and response types derive `utoipa::ToSchema` where they are defined. Built only
//! with the `openapi` feature (the server's generated document).

use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, SchemaFormat, Type,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::explain::{Explanation, player_names};
use crate::types::{Action, Symbol};

impl PartialSchema for Symbol {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[A-Z][A-Z0-9.\-]*$"))
            .min_length(Some(1))
            .max_length(Some(Symbol::MAX_LEN))
            .description(Some(
                "A ticker: 1-12 characters, an upper-case letter first",
            ))
            .into()
    }
}

impl ToSchema for Symbol {}

impl PartialSchema for Explanation {
    fn schema() -> RefOr<Schema> {
        let number = || {
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
        };
        let values = player_names().fold(
            ObjectBuilder::new()
                .description(Some(
                    "feature (the 12 features and 3 hit rates) → attribution",
                ))
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            |o, name| o.property(name, number()).required(name),
        );
        ObjectBuilder::new()
            .description(Some(
                "Shapley values of the blended probability of the chosen action through the \
                 whole ensemble, against the training means (permutation sampling, seeded: the \
                 same request gives the same explanation); base_value + Σ values = confidence \
                 (±1e-4)",
            ))
            .property(
                "method",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["shap"])),
            )
            .required("method")
            .property("output", Action::schema())
            .required("output")
            .property("base_value", number())
            .required("base_value")
            .property("values", values)
            .required("values")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for Explanation {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Action::name().into_owned(), Action::schema()));
    }
}
