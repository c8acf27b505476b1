//! Generates the gRPC service and its messages from `proto/`, with the
//! file descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/kappa/gateway/v1/gateway.proto";
    println!("cargo:rerun-if-changed={proto}");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("kappa_gateway_v1.bin"))
        .compile_with_config(config, &[proto], &["proto"])?;
    Ok(())
}
