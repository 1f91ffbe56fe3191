//! Turning a merkle batch into contract calls: the PLOG anchor (which carries the log items), then PTKN
//! and PBADGE `batchMint` chunks (recipients aggregated, at most `max_mints_per_tx` each), then one PTKN
//! `burn` per burn. Every batch call carries a batch id derived from the batch's root, so a retried call
//! is refused on-chain.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::sol_types::{SolCall, SolValue};
use custody_contracts::bindings::{peruri_badge::PeruriBadge, peruri_log::PeruriLog, peruri_token::PeruriToken};

use crate::item::ItemKind;

/// The contracts issuance calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssuanceContracts {
    /// PTKN.
    pub token: Address,
    /// PBADGE.
    pub badge: Address,
    /// PLOG.
    pub log: Address,
}

impl From<&custody_contracts::Contracts> for IssuanceContracts {
    fn from(c: &custody_contracts::Contracts) -> Self {
        Self { token: c.peruri_token, badge: c.peruri_badge, log: c.peruri_log }
    }
}

/// The on-chain batch id of call `chunk` of contract `tag` for the batch with `root`.
pub fn chain_batch_id(root: B256, tag: &str, chunk: u64) -> B256 {
    keccak256((root, tag.to_owned(), U256::from(chunk)).abi_encode_params())
}

/// One issued item to carry: its row id, recipient and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) id: i64,
    pub(crate) recipient: Address,
    pub(crate) kind: ItemKind,
}

/// A planned call and the items it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) target: Address,
    pub(crate) calldata: Bytes,
    pub(crate) items: Vec<i64>,
}

/// The calls of a batch, anchor first (carrying the log items).
pub(crate) fn plan(
    contracts: IssuanceContracts,
    root: B256,
    leaf_count: u64,
    uri: &str,
    items: &[Item],
    max_per_tx: usize,
) -> Vec<Call> {
    let max_per_tx = max_per_tx.max(1);
    let anchor = PeruriLog::anchorCall {
        batchId: chain_batch_id(root, "PLOG", 0),
        root,
        leafCount: leaf_count,
        uri: uri.to_owned(),
    };
    let mut calls = vec![Call { target: contracts.log, calldata: anchor.abi_encode().into(), items: Vec::new() }];

    // PTKN: one amount per recipient (summed), in chunks.
    let mut mints: BTreeMap<Address, (U256, Vec<i64>)> = BTreeMap::new();
    let mut badges: BTreeMap<(Address, U256), Vec<i64>> = BTreeMap::new();
    for item in items {
        match &item.kind {
            ItemKind::Token(amount) => {
                let entry = mints.entry(item.recipient).or_default();
                entry.0 += *amount;
                entry.1.push(item.id);
            }
            ItemKind::Badge(id) => badges.entry((item.recipient, *id)).or_default().push(item.id),
            ItemKind::Log => calls[0].items.push(item.id),
        }
    }
    let mints: Vec<_> = mints.into_iter().collect();
    for (chunk, part) in mints.chunks(max_per_tx).enumerate() {
        let call = PeruriToken::batchMintCall {
            batchId: chain_batch_id(root, "PTKN", chunk as u64),
            recipients: part.iter().map(|(r, _)| *r).collect(),
            amounts: part.iter().map(|(_, (a, _))| *a).collect(),
        };
        let items = part.iter().flat_map(|(_, (_, ids))| ids.iter().copied()).collect();
        calls.push(Call { target: contracts.token, calldata: call.abi_encode().into(), items });
    }
    let badges: Vec<_> = badges.into_iter().collect();
    for (chunk, part) in badges.chunks(max_per_tx).enumerate() {
        let call = PeruriBadge::batchMintCall {
            batchId: chain_batch_id(root, "PBADGE", chunk as u64),
            recipients: part.iter().map(|((r, _), _)| *r).collect(),
            ids: part.iter().map(|((_, id), _)| *id).collect(),
        };
        let items = part.iter().flat_map(|(_, ids)| ids.iter().copied()).collect();
        calls.push(Call { target: contracts.badge, calldata: call.abi_encode().into(), items });
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_first_then_aggregated_chunks() {
        let contracts = IssuanceContracts {
            token: Address::repeat_byte(1),
            badge: Address::repeat_byte(2),
            log: Address::repeat_byte(3),
        };
        let (a, b, c) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb), Address::repeat_byte(0xc));
        let items = vec![
            Item { id: 1, recipient: a, kind: ItemKind::Token(U256::from(5)) },
            Item { id: 2, recipient: a, kind: ItemKind::Token(U256::from(7)) },
            Item { id: 3, recipient: b, kind: ItemKind::Token(U256::from(1)) },
            Item { id: 4, recipient: c, kind: ItemKind::Token(U256::from(1)) },
            Item { id: 5, recipient: a, kind: ItemKind::Badge(U256::from(9)) },
            Item { id: 7, recipient: c, kind: ItemKind::Log },
        ];
        let root = B256::repeat_byte(7);
        let calls = plan(contracts, root, 4, "u", &items, 2);
        let targets: Vec<_> = calls.iter().map(|c| c.target).collect();
        assert_eq!(targets, [contracts.log, contracts.token, contracts.token, contracts.badge]);
        let first = PeruriToken::batchMintCall::abi_decode(&calls[1].calldata).expect("decodes");
        assert_eq!(first.recipients, vec![a, b]);
        assert_eq!(first.amounts, vec![U256::from(12), U256::from(1)], "a's amounts are summed");
        assert_eq!(first.batchId, chain_batch_id(root, "PTKN", 0));
        assert_eq!(calls[1].items, vec![1, 2, 3]);
        let second = PeruriToken::batchMintCall::abi_decode(&calls[2].calldata).expect("decodes");
        assert_eq!((second.batchId, second.recipients), (chain_batch_id(root, "PTKN", 1), vec![c]));
        let anchor = PeruriLog::anchorCall::abi_decode(&calls[0].calldata).expect("decodes");
        assert_eq!((anchor.root, anchor.leafCount), (root, 4));
        assert_eq!(calls[0].items, vec![7], "the anchor carries the log items");
        assert_ne!(chain_batch_id(root, "PTKN", 0), chain_batch_id(root, "PBADGE", 0));
    }
}
