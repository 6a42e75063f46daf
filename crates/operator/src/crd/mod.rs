//! The `HostPool` custom resource (`kubedrs.io/v1alpha1`): spec, status and the checks the API server
//! cannot make.
//!
//! The names follow `docs/api.md` (the API contract). The Rust types are the source of the CRD: `///` docs
//! become field descriptions, `#[serde(default = ..)]` becomes schema defaults, `#[schemars(..)]` bounds and
//! `x-kubernetes-validations` (CEL) rules become server-side validation. `kubedrs crd` prints the YAML that
//! is committed in `crds/` and in the chart; a test fails when they drift.
//!
//! [`HostPoolSpec::validate`] is the second line: what a schema cannot say (a selector operator that does
//! not exist, an interval that does not parse when the API server skipped CEL) becomes a list of
//! [`FieldError`]s that name the field, for the `Valid` condition.
//!
//! Files: [`spec`] (what users write), [`status`] (what kubedrs writes), [`validate`] (spec -> engine settings,
//! errors with their field), [`generate`] (the YAML).

mod generate;
mod spec;
mod status;
mod validate;

pub use generate::*;
pub use spec::*;
pub use status::*;
pub use validate::*;
