// Runs every example in examples/ in order, each in its own process; fails on the first that fails.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";

const files = readdirSync(new URL("../examples/", import.meta.url))
  .filter((f) => /^\d\d-.*\.ts$/.test(f))
  .sort();
for (const file of files) {
  console.log(`\n$ tsx examples/${file}`);
  const run = spawnSync("npx", ["tsx", `examples/${file}`], { stdio: "inherit", timeout: 60_000 });
  if (run.status !== 0) {
    console.error(`examples/${file} failed (exit ${run.status ?? run.signal})`);
    process.exit(1);
  }
}
console.log(`\n${files.length} examples ran`);
