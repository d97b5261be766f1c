//! Compiles the `.proto` files with protox (pure Rust), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/opsfleet/v1/event.proto",
        "proto/opsfleet/v1/command.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let mut config = prost_build::Config::new();
    config.btree_map(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
