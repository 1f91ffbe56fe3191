// Verifies a smart-account signature the way a dApp does, with viem (an independent client): the public
// client's verifyMessage / verifyHash, which use ERC-6492 for a counterfactual account (deployless call)
// and ERC-1271 for a deployed one. Prints `true` or `false`.
//   node contracts/test-tools/verify-signature.mjs <rpcUrl> <address> <message|typedData|hash> <value> <signature>
// (for typedData, <value> is the JSON of {domain, types, primaryType, message})
import { createPublicClient, http } from "viem";

const [rpcUrl, address, kind, value, signature] = process.argv.slice(2);
const client = createPublicClient({ transport: http(rpcUrl) });
const valid =
  kind === "message"
    ? await client.verifyMessage({ address, message: value, signature })
    : kind === "typedData"
      ? await client.verifyTypedData({ address, ...JSON.parse(value), signature })
      : await client.verifyHash({ address, hash: value, signature });
console.log(valid ? "true" : "false");
