//! Sans-IO FTP vocabulary: command lines from clients ([`line`](mod@line), [`command`]),
//! replies from backends ([`reply`]), the address encodings of
//! PORT/PASV/EPRT/EPSV ([`addr`]; RFC 959, RFC 2428, RFC 1123 §4.1.2), and
//! the rewriting rules between the two legs ([`rewrite`]).
//!
//! Nothing in this module performs I/O; the session driver feeds it bytes and
//! writes out what it produces. Everything here is unit- and property-tested.

pub mod addr;
pub mod command;
pub mod line;
pub mod reply;
pub mod rewrite;
