//! Event store benchmark (in progress on the events branch).

fn main() {}
