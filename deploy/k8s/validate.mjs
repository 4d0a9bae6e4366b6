// Validates every object in deploy/k8s/*.yaml against the Kubernetes OpenAPI schemas bundled in the npm package
// kubernetes-models (installed into tools/node by scripts/setup.sh). Prints one line per invalid object and exits 1,
// or prints "N objects valid". Run: node deploy/k8s/validate.mjs   (tests/Duck.Silo.Tests runs it too).
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "..", "..", "tools", "node", "node_modules");
const require = createRequire(join(modules, "noop.js"));
const YAML = require("yaml");

let valid = 0, invalid = 0;
for (const file of readdirSync(here).filter(f => f.endsWith(".yaml")).sort()) {
  for (const doc of YAML.parseAllDocuments(readFileSync(join(here, file), "utf8"))) {
    const obj = doc.toJS();
    if (!obj) continue;
    const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : [null, obj.apiVersion];
    const path = join(modules, "kubernetes-models", ...(group ? [group, version] : [version]), `${obj.kind}.js`);
    const where = `${file}: ${obj.kind} ${obj.metadata?.name}`;
    try {
      const { [obj.kind]: Model } = await import(pathToFileURL(path).href);
      new Model(obj).validate();
      valid++;
    } catch (e) {
      invalid++;
      console.log(`${where}: ${e.code === "ERR_MODULE_NOT_FOUND" ? `unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}` : e.message.replace(/\s+/g, " ")}`);
    }
  }
}
if (invalid > 0) process.exit(1);
console.log(`${valid} objects valid`);
