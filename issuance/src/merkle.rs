//! Merkle trees in the shape of OpenZeppelin's `StandardMerkleTree`: leaves are
//! `keccak256(bytes.concat(keccak256(abi.encode(values))))`, sorted, laid out in an array tree, and
//! pairs are hashed in sorted order, so `MerkleProof.verify` (and `PLOG.verify`) accept the proofs.

use alloy::primitives::{B256, keccak256};
use alloy::sol_types::SolValue;

/// The double hash of ABI-encoded values (`abi.encode(...)`, parameters encoding).
pub fn leaf_hash(encoded: &[u8]) -> B256 {
    keccak256(keccak256(encoded))
}

/// An activity's leaf: `abi.encode(bytes32 id, string type, uint64 occurredAt)`, never its payload or user.
pub fn activity_leaf(id: B256, kind: &str, occurred_at: u64) -> B256 {
    leaf_hash(&(id, kind.to_owned(), occurred_at).abi_encode_params())
}

fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    keccak256([lo.as_slice(), hi.as_slice()].concat())
}

/// A tree over leaf hashes (sorted on construction, as `StandardMerkleTree.of` with `sortLeaves`).
#[derive(Clone, Debug)]
pub struct MerkleTree {
    nodes: Vec<B256>,
}

impl MerkleTree {
    /// The tree of `leaves` (`None` when empty).
    pub fn new(leaves: &[B256]) -> Option<Self> {
        if leaves.is_empty() {
            return None;
        }
        let mut sorted = leaves.to_vec();
        sorted.sort();
        let n = sorted.len();
        let mut nodes = vec![B256::ZERO; 2 * n - 1];
        for (i, leaf) in sorted.into_iter().enumerate() {
            let at = nodes.len() - 1 - i;
            nodes[at] = leaf;
        }
        for i in (0..nodes.len() - n).rev() {
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2]);
        }
        Some(Self { nodes })
    }

    /// The root.
    pub fn root(&self) -> B256 {
        self.nodes[0]
    }

    /// The proof of `leaf` (`None` if it is not a leaf of this tree).
    pub fn proof(&self, leaf: B256) -> Option<Vec<B256>> {
        let leaves = self.nodes.len().div_ceil(2);
        let mut i = (self.nodes.len() - leaves..self.nodes.len()).find(|&i| self.nodes[i] == leaf)?;
        let mut proof = Vec::new();
        while i > 0 {
            let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
            proof.push(self.nodes[sibling]);
            i = (i - 1) / 2;
        }
        Some(proof)
    }
}

/// Whether `proof` takes `leaf` to `root` (as OpenZeppelin's `MerkleProof.verify`).
pub fn verify(root: B256, leaf: B256, proof: &[B256]) -> bool {
    proof.iter().fold(leaf, |acc, p| hash_pair(acc, *p)) == root
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256, b256};

    use super::*;

    #[test]
    fn matches_the_openzeppelin_readme_example() {
        // @openzeppelin/merkle-tree README: StandardMerkleTree.of(values, ["address", "uint256"]).
        let values = [
            (Address::repeat_byte(0x11), U256::from(5_000_000_000_000_000_000u128)),
            (Address::repeat_byte(0x22), U256::from(2_500_000_000_000_000_000u128)),
        ];
        let leaves: Vec<B256> = values.iter().map(|v| leaf_hash(&v.abi_encode_params())).collect();
        let tree = MerkleTree::new(&leaves).expect("non-empty");
        assert_eq!(tree.root(), b256!("0xd4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77"));
    }

    #[test]
    fn every_leaf_proves_and_nothing_else_does() {
        for n in 1..=9u8 {
            let leaves: Vec<B256> = (0..n).map(|i| activity_leaf(B256::repeat_byte(i), "attendance", 1)).collect();
            let tree = MerkleTree::new(&leaves).expect("non-empty");
            for leaf in &leaves {
                let proof = tree.proof(*leaf).expect("a leaf");
                assert!(verify(tree.root(), *leaf, &proof), "n={n}");
                assert!(!verify(tree.root(), B256::repeat_byte(0xee), &proof));
            }
            assert!(tree.proof(B256::repeat_byte(0xee)).is_none());
        }
        assert!(MerkleTree::new(&[]).is_none());
    }

    #[test]
    fn leaf_depends_on_every_field() {
        let id = B256::repeat_byte(1);
        let base = activity_leaf(id, "attendance", 5);
        assert_ne!(base, activity_leaf(B256::repeat_byte(2), "attendance", 5));
        assert_ne!(base, activity_leaf(id, "milestone", 5));
        assert_ne!(base, activity_leaf(id, "attendance", 6));
    }
}
