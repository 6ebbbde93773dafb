//! Shared test support: the in-process harness ([`harness`]) and the real
//! servers and clients ([`tools`]). Each integration test uses a subset.
#![allow(dead_code, unused_imports)]

pub mod harness;
pub mod tools;
