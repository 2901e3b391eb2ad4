//! Gateway throughput benchmark (written with the gateway tests).

fn main() {}
