import { defineConfig } from "tsup";

export default defineConfig({
  // `ricochet/testing` is an entry of its own: the main entry never loads it.
  entry: { index: "src/index.ts", testing: "src/testing/index.ts" },
  format: ["esm"],
  target: "node20",
  sourcemap: true,
  clean: true,
  dts: { compilerOptions: { ignoreDeprecations: "6.0" } },
});
