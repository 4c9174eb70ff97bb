// Wraps a core module into a component of world weir:plugin/bytes-plugin@0.1.0 with the
// wasm-tools that jco bundles (@bytecodealliance/jco-transpile, the library under the `jco`
// CLI): the equivalent of `wasm-tools component embed` + `wasm-tools component new`.
// Usage: node componentize.mjs <plugin.wit> <core.wasm> <out.wasm>
// Prints the component's WIT and fails when it imports anything but weir:plugin.
//
// Why not the CLI `jco embed --wit FILE` + `jco new`: with jco 1.35.0 the bundled wasm-tools
// runs on preview2-shim 0.26, which gives it no filesystem preopens, so `jco embed --wit
// <path>` panics with "No such file or directory". Passing the WIT text (witSource) avoids
// the filesystem, and this package is 105 MB against 340 MB for the whole jco CLI.
import { readFile, writeFile } from "node:fs/promises";
import { componentEmbed, componentNew, componentWit } from "@bytecodealliance/jco-transpile/wasm-tools";

const [witPath, corePath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node componentize.mjs <plugin.wit> <core.wasm> <out.wasm>");
  process.exit(2);
}
const witSource = await readFile(witPath, "utf8");
const core = await readFile(corePath);
const embedded = await componentEmbed({
  binary: core,
  witSource,
  world: "bytes-plugin",
  stringEncoding: "utf8",
});
const component = await componentNew(embedded, []);
await writeFile(outPath, component);
const wit = await componentWit(component);
process.stdout.write(wit.split("\n").filter((l) => /^\s*(world|import|export)\b/.test(l)).join("\n") + "\n");
// The component must import nothing but weir:plugin/host (and the type-only
// weir:plugin/types the WIT `use`s): the host links no WASI.
const imports = [...wit.matchAll(/^\s*import\s+([^;]+);/gm)].map((m) => m[1].trim());
const bad = imports.filter((i) => !/^weir:plugin\/(host|types)@/.test(i));
if (bad.length) {
  console.error(`componentize: unexpected imports: ${bad.join(", ")}`);
  process.exit(1);
}
