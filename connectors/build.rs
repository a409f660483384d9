//! Generates the Open Inference Protocol's gRPC types, server and client from
//! `proto/grpc_service.proto` with `protox` (a protobuf compiler written in Rust) and
//! `tonic-prost-build`, so the build needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/grpc_service.proto");
    let descriptors = protox::compile(["grpc_service.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        // Raw tensors as `Bytes`: decoded without a copy out of the received frames.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
