//! The committed build artifacts that are used as data rather than through `sol!` bindings.

use std::sync::LazyLock;

use alloy::json_abi::JsonAbi;
use alloy::primitives::Bytes;
use serde::Deserialize;

/// A contract artifact: ABI and bytecode (the committed JSON under `contracts/artifacts/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Contract name in its source.
    pub contract_name: String,
    /// Where it came from (compiler version or npm package).
    pub compiler: String,
    /// ABI.
    pub abi: JsonAbi,
    /// Init code.
    pub bytecode: Bytes,
    /// Runtime code.
    pub deployed_bytecode: Bytes,
}

macro_rules! artifact {
    ($fn:ident, $file:literal) => {
        #[doc = concat!("`artifacts/", $file, "`.")]
        pub fn $fn() -> &'static Artifact {
            static ARTIFACT: LazyLock<Artifact> = LazyLock::new(|| {
                serde_json::from_str(include_str!(concat!("../artifacts/", $file))).expect(concat!(
                    "committed artifact ",
                    $file,
                    " parses"
                ))
            });
            &ARTIFACT
        }
    };
}

impl Artifact {
    artifact!(entry_point_v07, "EntryPointV07.json");
    artifact!(entry_point_v08, "EntryPointV08.json");
    artifact!(entry_point_simulations_v07, "EntryPointSimulationsV07.json");
    artifact!(entry_point_simulations_v08, "EntryPointSimulationsV08.json");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_artifacts_parse() {
        for a in [Artifact::entry_point_v07(), Artifact::entry_point_v08()] {
            assert_eq!(a.contract_name, "EntryPoint");
            assert!(a.compiler.starts_with("npm:@account-abstraction/contracts@0."));
            assert!(a.bytecode.len() > a.deployed_bytecode.len());
        }
    }
}
