//! Shared test support: the in-process harness ([`harness`]), the real
//! servers and clients ([`tools`]) and a bare HTTP GET ([`http`]). Each
//! integration test uses a subset.
#![allow(dead_code, unused_imports)]

pub mod harness;
pub mod http;
pub mod tools;
