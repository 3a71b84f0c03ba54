/**
 * The package as a user gets it: `npm pack` from this clone (which builds it), installed into an empty
 * ESM project with only the README's required peers (zod, @nats-io/transport-node) plus TypeScript and
 * Node's types, then type-checked strictly without `skipLibCheck`, and imported and run by Node.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";

const root = new URL("../..", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "ricochet-pack-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The versions this repository tests with, so the install comes from npm's cache. */
function pinned(name: string): string {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
    devDependencies: Record<string, string>;
  };
  const version = pkg.devDependencies[name];
  if (version === undefined) throw new Error(`${name} is not a devDependency`);
  return `${name}@${version}`;
}

const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

it("installs from `npm pack` with only the required peers, type-checks strictly, and runs", () => {
  const tarball = run("npm", ["pack", "--silent", "--pack-destination", dir], root)
    .trim()
    .split("\n")
    .pop();
  expect(tarball).toMatch(/^ricochet-.*\.tgz$/);
  const listed = run("tar", ["-tzf", join(dir, tarball as string)], dir);
  expect(listed).toContain("package/dist/index.js");
  expect(listed).toContain("package/dist/index.d.ts");

  const app = join(dir, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "app", private: true, type: "module" }),
  );
  run(
    "npm",
    [
      "install",
      "--prefer-offline",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      join(dir, tarball as string),
      pinned("zod"),
      pinned("@nats-io/transport-node"),
      pinned("typescript"),
      pinned("@types/node"),
    ],
    app,
  );
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: "nodenext",
        moduleResolution: "nodenext",
        target: "es2022",
        noEmit: true,
        skipLibCheck: false,
        types: ["node"],
      },
      files: ["index.ts"],
    }),
  );
  const program = `import { createClient, createResponder, defineContract, memoryTransport, method } from "ricochet";
import { z } from "zod";
const c = defineContract({
  service: "inv",
  version: "1.0.0",
  methods: { stock: method({ request: z.object({ sku: z.string() }), response: z.object({ n: z.number() }) }) },
});
const transport = memoryTransport();
const responder = createResponder(c, { stock: () => ({ n: 3 }) }, { transport });
await responder.start();
const client = createClient(c, { transport });
const out: { n: number } = await client.stock({ sku: "a" });
console.log(JSON.stringify(out));
await client.close();
await responder.stop();
`;
  writeFileSync(join(app, "index.ts"), program);
  // Strict, and without skipLibCheck: the published .d.ts must not need the optional peers.
  run(join(app, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"], app);
  writeFileSync(join(app, "index.mjs"), program.replace(/const out: \{ n: number \}/, "const out"));
  expect(run("node", ["index.mjs"], app).trim()).toBe('{"n":3}');
}, 180_000);
