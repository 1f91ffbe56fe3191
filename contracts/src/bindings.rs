//! alloy bindings generated from the committed artifacts (`contracts/artifacts/*.json`).
//!
//! Each contract lives in its own module because several artifacts define the same struct names
//! (`PackedUserOperation`, ...). Convert [`crate::userop::PackedUserOperation`] into a module's struct with
//! `.into()`.
#![allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::too_many_arguments)]

macro_rules! binding {
    ($module:ident, $contract:ident, $file:literal) => {
        pub mod $module {
            alloy::sol!(
                #[sol(rpc, all_derives)]
                $contract,
                concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts/", $file)
            );
        }
    };
}

binding!(peruri_account_v07, PeruriAccountV07, "PeruriAccountV07.json");
binding!(peruri_account_factory_v07, PeruriAccountFactoryV07, "PeruriAccountFactoryV07.json");
binding!(peruri_account_v08, PeruriAccountV08, "PeruriAccountV08.json");
binding!(peruri_account_factory_v08, PeruriAccountFactoryV08, "PeruriAccountFactoryV08.json");
binding!(peruri_paymaster, PeruriPaymaster, "PeruriPaymaster.json");
binding!(peruri_token, PeruriToken, "PeruriToken.json");
binding!(peruri_badge, PeruriBadge, "PeruriBadge.json");
binding!(peruri_log, PeruriLog, "PeruriLog.json");
binding!(simple_account_v07, SimpleAccount, "SimpleAccountV07.json");
binding!(simple_account_factory_v07, SimpleAccountFactory, "SimpleAccountFactoryV07.json");
binding!(simple_account_v08, SimpleAccount, "SimpleAccountV08.json");
binding!(simple_account_factory_v08, SimpleAccountFactory, "SimpleAccountFactoryV08.json");
