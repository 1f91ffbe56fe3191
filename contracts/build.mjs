// Build the Peruri Custody contracts with the pinned solc (npm), standard JSON, and write the committed
// artifacts under artifacts/. The EntryPoints and eth-infinitism's SimpleAccount (for the gas comparison)
// are copied from the pinned @account-abstraction/contracts npm artifacts, unchanged.
//
//   node build.mjs           write artifacts/
//   node build.mjs --check   rebuild in memory; exit 1 if anything differs from artifacts/
import { createRequire } from "node:module";
import { readFileSync, writeFileSync, readdirSync, mkdirSync, existsSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = join(here, "node_modules");
const artifactsDir = join(here, "artifacts");
const check = process.argv.includes("--check");

if (!existsSync(join(nodeModules, "solc"))) {
  console.error("contracts/node_modules is missing: run `npm ci --prefix contracts` first");
  process.exit(2);
}

const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
const solc = require("solc");
const SOLC_VERSION = pkg.dependencies.solc;
if (!solc.version().startsWith(`${SOLC_VERSION}+`)) {
  console.error(`solc ${solc.version()} is installed but package.json pins ${SOLC_VERSION}: run \`npm ci --prefix contracts\``);
  process.exit(2);
}

// Compiler settings. evmVersion cancun: Besu (and Hardhat) support it, and EntryPoint v0.8 needs it anyway.
// No metadata hash: artifacts depend only on sources and settings, so CI can rebuild them byte for byte.
const settings = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 10000 },
  viaIR: false,
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

// Contracts of ours that get an artifact (abstract bases and interfaces do not).
const OURS = [
  "PeruriAccountV07",
  "PeruriAccountFactoryV07",
  "PeruriAccountV08",
  "PeruriAccountFactoryV08",
  "PeruriPaymaster",
  "PeruriToken",
  "PeruriBadge",
  "PeruriLog",
];

// Copied from the npm packages: [artifact name, package alias, contract].
const FROM_NPM = [
  ["EntryPointV07", "@account-abstraction/contracts-v07", "EntryPoint"],
  ["EntryPointV08", "@account-abstraction/contracts-v08", "EntryPoint"],
  ["EntryPointSimulationsV07", "@account-abstraction/contracts-v07", "EntryPointSimulations"],
  ["EntryPointSimulationsV08", "@account-abstraction/contracts-v08", "EntryPointSimulations"],
  ["SimpleAccountV07", "@account-abstraction/contracts-v07", "SimpleAccount"],
  ["SimpleAccountFactoryV07", "@account-abstraction/contracts-v07", "SimpleAccountFactory"],
  ["SimpleAccountV08", "@account-abstraction/contracts-v08", "SimpleAccount"],
  ["SimpleAccountFactoryV08", "@account-abstraction/contracts-v08", "SimpleAccountFactory"],
];

function solFiles(dir) {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return solFiles(path);
      return name.endsWith(".sol") ? [path] : [];
    });
}

function compile() {
  const sources = {};
  for (const file of solFiles(join(here, "solidity"))) {
    sources[relative(here, file)] = { content: readFileSync(file, "utf8") };
  }
  const input = { language: "Solidity", sources, settings };
  const findImports = (path) => {
    const file = join(nodeModules, path);
    if (!path.startsWith("@") || !existsSync(file)) return { error: `import not found: ${path}` };
    return { contents: readFileSync(file, "utf8") };
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const e of output.errors ?? []) console.error(e.formattedMessage);
  if (errors.length > 0) process.exit(1);

  const artifacts = {};
  for (const [source, contracts] of Object.entries(output.contracts)) {
    for (const [name, c] of Object.entries(contracts)) {
      if (!OURS.includes(name)) continue;
      artifacts[name] = {
        contractName: name,
        sourceName: source,
        compiler: `solc ${solc.version()}`,
        abi: c.abi,
        bytecode: `0x${c.evm.bytecode.object}`,
        deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
      };
    }
  }
  for (const name of OURS) {
    if (!artifacts[name]) {
      console.error(`contract ${name} not found in the sources`);
      process.exit(1);
    }
  }
  for (const [name, pkgName, contract] of FROM_NPM) {
    const pkgDir = join(nodeModules, pkgName);
    const version = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version;
    const a = JSON.parse(readFileSync(join(pkgDir, "artifacts", `${contract}.json`), "utf8"));
    artifacts[name] = {
      contractName: contract,
      sourceName: a.sourceName,
      compiler: `npm:@account-abstraction/contracts@${version} (artifact copied unchanged)`,
      abi: a.abi,
      bytecode: a.bytecode,
      deployedBytecode: a.deployedBytecode,
    };
  }
  const files = {};
  for (const [name, a] of Object.entries(artifacts).sort(([x], [y]) => x.localeCompare(y))) {
    files[`${name}.json`] = `${JSON.stringify(a, null, 2)}\n`;
  }
  files["build-info.json"] = `${JSON.stringify(
    {
      solc: solc.version(),
      settings,
      packages: Object.fromEntries(
        Object.keys(pkg.dependencies).map((dep) => [
          dep,
          JSON.parse(readFileSync(join(nodeModules, dep, "package.json"), "utf8")).version,
        ]),
      ),
      artifacts: Object.keys(files).sort(),
    },
    null,
    2,
  )}\n`;
  return files;
}

const files = compile();
if (check) {
  const existing = existsSync(artifactsDir) ? readdirSync(artifactsDir).filter((f) => f.endsWith(".json")) : [];
  let differ = false;
  for (const [name, content] of Object.entries(files)) {
    const path = join(artifactsDir, name);
    if (!existsSync(path)) {
      console.error(`missing: artifacts/${name}`);
      differ = true;
    } else if (readFileSync(path, "utf8") !== content) {
      console.error(`differs: artifacts/${name}`);
      differ = true;
    }
  }
  for (const name of existing) {
    if (!(name in files)) {
      console.error(`stale: artifacts/${name}`);
      differ = true;
    }
  }
  if (differ) {
    console.error("contract artifacts are out of date: run `node contracts/build.mjs` and commit artifacts/");
    process.exit(1);
  }
  console.log(`artifacts up to date (${Object.keys(files).length} files, ${solc.version()})`);
} else {
  mkdirSync(artifactsDir, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(artifactsDir, name), content);
  console.log(`wrote ${Object.keys(files).length} files to artifacts/ (${solc.version()})`);
}
