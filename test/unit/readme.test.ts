import { readFileSync } from "node:fs";
import { expect, it } from "vitest";

it("shows examples/01-quickstart.ts verbatim as the README's quickstart", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const example = readFileSync(new URL("../../examples/01-quickstart.ts", import.meta.url), "utf8");
  const block = /## Quickstart[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(block).toBe(example);
});
