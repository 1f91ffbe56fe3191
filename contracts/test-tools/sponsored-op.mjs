// Sends one sponsored UserOperation the way a dApp does, with viem (an independent client): a bundler
// client with a paymaster client (ERC-7677: pm_getPaymasterStubData, gas estimation, pm_getPaymasterData),
// for a fresh owner's Peruri account (deployed by the operation). Prints the receipt as JSON.
//   node contracts/test-tools/sponsored-op.mjs <rpcUrl> <bundlerUrl> <paymasterUrl> <0.7|0.8> <factory>
import { createPublicClient, defineChain, encodeFunctionData, http, parseAbi } from "viem";
import {
  createBundlerClient,
  createPaymasterClient,
  entryPoint07Abi,
  entryPoint07Address,
  entryPoint08Abi,
  entryPoint08Address,
  getUserOperationHash,
  toSmartAccount,
} from "viem/account-abstraction";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

const [rpcUrl, bundlerUrl, paymasterUrl, version, factory] = process.argv.slice(2);
const chainId = await createPublicClient({ transport: http(rpcUrl) }).getChainId();
const chain = defineChain({
  id: chainId,
  name: "Peruri",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
});
const client = createPublicClient({ chain, transport: http(rpcUrl) });
const owner = privateKeyToAccount(generatePrivateKey());
const accountAbi = parseAbi([
  "function execute(address target, uint256 value, bytes data)",
  "function executeBatch((address target, uint256 value, bytes data)[] calls)",
]);
const factoryAbi = parseAbi([
  "function createAccount(address owner, uint256 salt) returns (address)",
  "function getAddress(address owner, uint256 salt) view returns (address)",
]);
const entryPoint =
  version === "0.7"
    ? { address: entryPoint07Address, version: "0.7", abi: entryPoint07Abi }
    : { address: entryPoint08Address, version: "0.8", abi: entryPoint08Abi };
const address = await client.readContract({
  address: factory,
  abi: factoryAbi,
  functionName: "getAddress",
  args: [owner.address, 0n],
});

const account = await toSmartAccount({
  client,
  entryPoint,
  async getAddress() {
    return address;
  },
  async encodeCalls(calls) {
    if (calls.length === 1) {
      const { to, value = 0n, data = "0x" } = calls[0];
      return encodeFunctionData({ abi: accountAbi, functionName: "execute", args: [to, value, data] });
    }
    const batch = calls.map(({ to, value = 0n, data = "0x" }) => ({ target: to, value, data }));
    return encodeFunctionData({ abi: accountAbi, functionName: "executeBatch", args: [batch] });
  },
  async getFactoryArgs() {
    const code = await client.getCode({ address });
    if (code && code !== "0x") return { factory: undefined, factoryData: undefined };
    const factoryData = encodeFunctionData({ abi: factoryAbi, functionName: "createAccount", args: [owner.address, 0n] });
    return { factory, factoryData };
  },
  // A real signature (key 1 over the zero hash): over the operation it recovers to a stranger, so
  // estimation pays for the same recovery and owner lookup as the owner's signature.
  async getStubSignature() {
    return "0xa0b37f8fba683cc68f6574cd43b39f0343a50008bf6ccea9d13231d9e7e2e1e411edc8d307254296264aebfc3dc76cd8b668373a072fd64665b50000e9fcce521c";
  },
  async signMessage({ message }) {
    return owner.signMessage({ message });
  },
  async signTypedData(typedData) {
    return owner.signTypedData(typedData);
  },
  // PeruriAccount: EIP-191 over the userOpHash for v0.7; v0.8's userOpHash is already an EIP-712 digest.
  async signUserOperation({ chainId, ...userOperation }) {
    const hash = getUserOperationHash({
      chainId: chainId ?? chain.id,
      entryPointAddress: entryPoint.address,
      entryPointVersion: entryPoint.version,
      userOperation: { ...userOperation, sender: address },
    });
    return version === "0.7" ? owner.signMessage({ message: { raw: hash } }) : owner.sign({ hash });
  },
});

const paymaster = createPaymasterClient({ transport: http(paymasterUrl) });
const bundler = createBundlerClient({
  account,
  client,
  paymaster,
  transport: http(bundlerUrl),
  // The production chain charges nothing: the sponsorship is the authorisation.
  userOperation: { estimateFeesPerGas: async () => ({ maxFeePerGas: 0n, maxPriorityFeePerGas: 0n }) },
});
const hash = await bundler.sendUserOperation({ calls: [{ to: owner.address, value: 0n, data: "0x" }] });
const receipt = await bundler.waitForUserOperationReceipt({ hash, timeout: 60_000 });
console.log(JSON.stringify({ hash, success: receipt.success, paymaster: receipt.paymaster, sender: receipt.sender }));
