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
    // Serialize only (for `opsctl events -o json`'s `payload`): field names as in the .proto;
    // enums as the integers they are on the wire.
    config.type_attribute(".", "#[derive(serde::Serialize)]");
    config.enum_attribute(
        ".opsfleet.v1.Event.body",
        "#[serde(rename_all = \"snake_case\")]",
    );
    config.compile_fds(fds)?;
    Ok(())
}
