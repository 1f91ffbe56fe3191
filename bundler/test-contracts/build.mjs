// Build the bundler's ERC-7562 rule-test contracts with the pinned solc from contracts/node_modules and
// write artifacts/<Contract>.json (abi, bytecode, deployedBytecode) for bundler/tests/sim.
//
//   node bundler/test-contracts/build.mjs           write artifacts/
//   node bundler/test-contracts/build.mjs --check   rebuild in memory; exit 1 if anything differs
import { createRequire } from "node:module";
import { readFileSync, writeFileSync, readdirSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const contractsDir = join(here, "..", "..", "contracts");
const require = createRequire(join(contractsDir, "package.json"));
const artifactsDir = join(here, "artifacts");
const check = process.argv.includes("--check");

if (!existsSync(join(contractsDir, "node_modules", "solc"))) {
  console.error("contracts/node_modules is missing: run `npm ci --prefix contracts` first");
  process.exit(2);
}
const solc = require("solc");

const settings = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const sourceDir = join(here, "solidity");
const sources = {};
for (const name of readdirSync(sourceDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[name] = { content: readFileSync(join(sourceDir, name), "utf8") };
}
const output = JSON.parse(solc.compile(JSON.stringify({ language: "Solidity", sources, settings })));
for (const e of output.errors ?? []) console.error(e.formattedMessage);
if ((output.errors ?? []).some((e) => e.severity === "error")) process.exit(1);

const files = {};
for (const contracts of Object.values(output.contracts)) {
  for (const [name, c] of Object.entries(contracts)) {
    if (c.evm.bytecode.object === "") continue; // abstract contracts and interfaces
    const artifact = {
      contractName: name,
      compiler: `solc ${solc.version()}`,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
    };
    files[`${name}.json`] = `${JSON.stringify(artifact, null, 2)}\n`;
  }
}

if (check) {
  let differ = false;
  for (const [name, content] of Object.entries(files)) {
    const path = join(artifactsDir, name);
    if (!existsSync(path) || readFileSync(path, "utf8") !== content) {
      console.error(`differs or missing: artifacts/${name}`);
      differ = true;
    }
  }
  const existing = existsSync(artifactsDir) ? readdirSync(artifactsDir).filter((f) => f.endsWith(".json")) : [];
  for (const name of existing.filter((n) => !(n in files))) {
    console.error(`stale: artifacts/${name}`);
    differ = true;
  }
  if (differ) process.exit(1);
  console.log(`test-contract artifacts up to date (${Object.keys(files).length} files)`);
} else {
  mkdirSync(artifactsDir, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(artifactsDir, name), content);
  console.log(`wrote ${Object.keys(files).length} files to artifacts/ (${solc.version()})`);
}
