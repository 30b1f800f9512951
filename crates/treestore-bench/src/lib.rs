//! TreeStore's end-to-end benchmarks (against PostgreSQL and SQLite) and the
//! synthetic workloads they run. So far: [`synthetic`], a deterministic generator
//! of policy documents in PageIndex's open-source output shape, for loads larger
//! than the real samples in `shared/data/pageindex/`.

pub mod synthetic;
