//! The simulator: a pool run over simulated time with the engine (`kubedrs simulate`).

pub mod cli;
