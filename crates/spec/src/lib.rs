//! What kubedrs users write, read the same way everywhere (the operator, the simulator, the CLI):
//! pool settings ([`pool::build`], for the HostPool CRD and scenario files alike), durations, quantities
//! and annotation values. Errors name the field and say what is allowed.

pub mod annotations;
pub mod duration;
pub mod pool;
pub mod quantity;
