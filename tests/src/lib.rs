//! End-to-end tests across services live in `e2e/` (one test binary with a module per
//! flow); this library is empty. Each test starts the real services in-process with
//! `App::build` on port 0, against the real Postgres and NATS, with a schema per service
//! and a subject prefix per test, so tests run in parallel and leave nothing behind.
