//! Framing: cutting a byte stream into frames and back.
