// Hardhat node configured like the production Besu chain. Started by the Rust harness
// (custody_contracts::LocalChain), which sets the environment below; the defaults match it.
//   PERURI_CHAIN_ID        chain id (default 1337)
//   PERURI_BLOCK_TIME_MS   0 = automine (tests), otherwise interval mining in ms (devnet: 2000)
//   PERURI_BLOCK_GAS_LIMIT block gas limit (default 100000000, as the generated Besu genesis)
//   PERURI_INITIAL_BASE_FEE base fee of the first block in wei (default 0, as Besu; tests of the paid path)
//   PERURI_NODE_LOGGING    1 = log every JSON-RPC call and mined block (default 0: the logging costs the
//                          single-threaded node a large share of its time under load)
const env = (name, fallback) => (process.env[name] === undefined ? fallback : Number(process.env[name]));
const blockTimeMs = env("PERURI_BLOCK_TIME_MS", 0);

module.exports = {
  paths: { sources: "./solidity", artifacts: "./.hardhat/artifacts", cache: "./.hardhat/cache" },
  networks: {
    hardhat: {
      chainId: env("PERURI_CHAIN_ID", 1337),
      hardfork: "cancun",
      initialBaseFeePerGas: env("PERURI_INITIAL_BASE_FEE", 0),
      gasPrice: 0,
      blockGasLimit: env("PERURI_BLOCK_GAS_LIMIT", 100000000),
      allowUnlimitedContractSize: false,
      loggingEnabled: env("PERURI_NODE_LOGGING", 0) === 1,
      mining: blockTimeMs === 0 ? { auto: true, interval: 0 } : { auto: false, interval: blockTimeMs },
    },
  },
};
