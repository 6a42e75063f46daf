//! What kubedrs users write, read the same way everywhere (the operator, the simulator, the CLI):
//! quantities, annotation values.

pub mod annotations;
pub mod quantity;
