//! Sans-IO FTP vocabulary: commands from clients, replies from backends, and the
//! address encodings of PORT/PASV/EPRT/EPSV (RFC 959, RFC 2428, RFC 1123 §4.1.2).
//!
//! Nothing in this module performs I/O; the session driver feeds it bytes and
//! writes out what it produces. Everything here is unit- and property-tested.

pub mod addr;
pub mod command;
pub mod line;
pub mod reply;
