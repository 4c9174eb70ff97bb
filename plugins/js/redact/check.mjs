// Prints the world of a component (imports/exports) and fails when it imports anything but
// weir:plugin/host and the type-only weir:plugin/types: the Weir host links no WASI.
// Usage: node check.mjs <component.wasm>
import { readFile } from "node:fs/promises";
import { componentWit } from "@bytecodealliance/jco-transpile/wasm-tools";

const path = process.argv[2];
const wit = await componentWit(await readFile(path));
const lines = wit.split("\n").filter((l) => /^\s*(world|import|export)\b/.test(l));
process.stdout.write(lines.join("\n") + "\n");
const imports = [...wit.matchAll(/^\s*import\s+([^;:]+(?::[^;]+)?);/gm)].map((m) => m[1].trim());
const bad = imports.filter((i) => !/^weir:plugin\/(host|types)@/.test(i));
if (bad.length) {
  console.error(`check: ${path} has unexpected imports: ${bad.join(", ")}`);
  process.exit(1);
}
if (!/^\s*export weir:plugin\/typed@0\.1\.0;/m.test(wit)) {
  console.error(`check: ${path} does not export weir:plugin/typed@0.1.0`);
  process.exit(1);
}
