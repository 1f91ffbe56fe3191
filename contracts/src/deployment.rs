//! The deployment record: chain id, block and contract addresses, written as JSON.

use std::path::Path;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

use crate::entry_point::EntryPointVersion;
use crate::error::RecordError;

/// Where everything is on one chain: `{"chainId", "block", "contracts": {name: address}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    /// Chain id.
    pub chain_id: u64,
    /// Latest block when the deployment finished.
    pub block: u64,
    /// Addresses by contract name.
    pub contracts: Contracts,
}

/// Contract addresses of a deployment, serialized under their contract names (`"EntryPointV07"`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Contracts {
    pub deterministic_deployer: Address,
    pub entry_point_v07: Address,
    pub entry_point_v08: Address,
    pub peruri_account_factory_v07: Address,
    /// The code the v0.7 clones delegate to (the factory's ERC-1967 dispatcher, its second CREATE).
    pub peruri_account_v07: Address,
    pub peruri_account_factory_v08: Address,
    /// The code the v0.8 clones delegate to (the factory's ERC-1967 dispatcher, its second CREATE).
    pub peruri_account_v08: Address,
    pub peruri_paymaster_v07: Address,
    pub peruri_paymaster_v08: Address,
    pub peruri_token: Address,
    pub peruri_badge: Address,
    pub peruri_log: Address,
}

impl Contracts {
    /// The EntryPoint of `version`.
    pub const fn entry_point(&self, version: EntryPointVersion) -> Address {
        match version {
            EntryPointVersion::V07 => self.entry_point_v07,
            EntryPointVersion::V08 => self.entry_point_v08,
        }
    }

    /// The account factory for `version`.
    pub const fn account_factory(&self, version: EntryPointVersion) -> Address {
        match version {
            EntryPointVersion::V07 => self.peruri_account_factory_v07,
            EntryPointVersion::V08 => self.peruri_account_factory_v08,
        }
    }

    /// The code the accounts of `version` delegate to (the dispatcher; part of every account address).
    pub const fn account_implementation(&self, version: EntryPointVersion) -> Address {
        match version {
            EntryPointVersion::V07 => self.peruri_account_v07,
            EntryPointVersion::V08 => self.peruri_account_v08,
        }
    }

    /// The logic a never-upgraded account of `version` runs (the factory's first CREATE).
    pub fn account_logic(&self, version: EntryPointVersion) -> Address {
        self.account_factory(version).create(1)
    }

    /// The paymaster for `version`.
    pub const fn paymaster(&self, version: EntryPointVersion) -> Address {
        match version {
            EntryPointVersion::V07 => self.peruri_paymaster_v07,
            EntryPointVersion::V08 => self.peruri_paymaster_v08,
        }
    }
}

impl Deployment {
    /// Write the record as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), RecordError> {
        let json =
            serde_json::to_string_pretty(self).map_err(|source| RecordError::Json { path: path.to_owned(), source })?;
        std::fs::write(path, json + "\n").map_err(|source| RecordError::Io {
            operation: "write",
            path: path.to_owned(),
            source,
        })
    }

    /// Read a record written by [`Self::write`].
    pub fn read(path: &Path) -> Result<Self, RecordError> {
        let json = std::fs::read_to_string(path).map_err(|source| RecordError::Io {
            operation: "read",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&json).map_err(|source| RecordError::Json { path: path.to_owned(), source })
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::address;

    use super::*;

    #[test]
    fn json_shape() {
        let d = Deployment {
            chain_id: 1337,
            block: 12,
            contracts: Contracts {
                entry_point_v07: EntryPointVersion::V07.address(),
                peruri_token: address!("0x00000000000000000000000000000000000000aa"),
                ..Default::default()
            },
        };
        let json = serde_json::to_value(&d).expect("serializes");
        assert_eq!(json["chainId"], 1337);
        assert_eq!(json["block"], 12);
        assert_eq!(json["contracts"]["EntryPointV07"], "0x0000000071727de22e5e9d8baf0edac6f37da032");
        assert_eq!(json["contracts"]["PeruriToken"], "0x00000000000000000000000000000000000000aa");
        assert_eq!(json["contracts"].as_object().map(|o| o.len()), Some(12));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deployment.json");
        d.write(&path).expect("writes");
        assert_eq!(Deployment::read(&path).expect("reads"), d);
    }
}
