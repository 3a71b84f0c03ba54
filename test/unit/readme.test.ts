import { readFileSync } from "node:fs";
import { expect, it } from "vitest";

it("shows examples/01-quickstart.ts verbatim as the README's quickstart", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const example = readFileSync(new URL("../../examples/01-quickstart.ts", import.meta.url), "utf8");
  const block = /## Quickstart[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(block).toBe(example);
});

it("shows docs/nats-server/authorization.conf verbatim in docs/security.md (the blocks the permissions test runs)", () => {
  const security = readFileSync(new URL("../../docs/security.md", import.meta.url), "utf8");
  const conf = readFileSync(
    new URL("../../docs/nats-server/authorization.conf", import.meta.url),
    "utf8",
  );
  const block = /## Permissions[\s\S]*?```conf\n([\s\S]*?)```/.exec(security)?.[1];
  expect(block).toBe(conf);
});
