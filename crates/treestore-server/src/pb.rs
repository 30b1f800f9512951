//! The gRPC messages and service of `proto/treestore.proto`, generated at build
//! time, and the encoded descriptor set reflection serves.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("treestore");

/// The file descriptor set of `treestore.proto` (for server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/treestore_descriptor.bin"));
