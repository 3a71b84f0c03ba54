/**
 * Authentication and TLS on a real nats-server, configured as docs/security.md shows: user and
 * password, token, nkey, and TLS with a certificate this test makes (openssl). Each serves a ricochet
 * call, and the wrong credentials are refused at connect, by nats.js, before ricochet is involved.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ConnectionOptions, nkeyAuthenticator, nkeys } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { createClient } from "../../src/client.js";
import { createResponder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, billingHandlers } from "../fixtures/billing.js";
import { startNatsServer } from "../support/nats-server.js";

const dir = mkdtempSync(join(tmpdir(), "ricochet-auth-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Serves billing on one connection and calls it on another, both with `options`. */
async function callWith(
  url: string,
  options: Partial<ConnectionOptions> & Record<string, unknown>,
) {
  const [rnc, cnc] = await Promise.all([
    connect({ servers: url, ...options }),
    connect({ servers: url, ...options }),
  ]);
  const responder = createResponder(billing, billingHandlers, { transport: natsTransport(rnc) });
  await responder.start();
  const client = createClient(billing, { transport: natsTransport(cnc) });
  try {
    return await client.echo({ text: "authenticated" });
  } finally {
    await client.close();
    await responder.stop();
    await Promise.all([rnc.close(), cnc.close()]);
  }
}

/** Makes a CA and a server certificate for 127.0.0.1 with openssl; returns their paths. */
function makeCertificates() {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  // nats.js checks the name "localhost" for a server it reaches by IP.
  writeFileSync(join(dir, "san.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=ricochet-test-ca",
  );
  run("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  run(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "1",
    "-extfile",
    join(dir, "san.cnf"),
  );
  return { ca: join(dir, "ca.pem"), cert: join(dir, "server.pem"), key: join(dir, "server.key") };
}

describe("authentication and TLS", () => {
  it("user and password", async () => {
    await using server = await startNatsServer({
      config: `authorization { users = [ { user: billing, password: "s3cret" } ] }`,
    });
    await expect(callWith(server.url, { user: "billing", pass: "s3cret" })).resolves.toEqual({
      text: "authenticated",
    });
    await expect(connect({ servers: server.url, user: "billing", pass: "wrong" })).rejects.toThrow(
      /Authorization Violation/i,
    );
  });

  it("token", async () => {
    await using server = await startNatsServer({
      config: `authorization { token: "t0ken-for-billing" }`,
    });
    await expect(callWith(server.url, { token: "t0ken-for-billing" })).resolves.toEqual({
      text: "authenticated",
    });
    await expect(connect({ servers: server.url, token: "nope" })).rejects.toThrow(
      /Authorization Violation/i,
    );
  });

  it("nkey", async () => {
    const user = nkeys.createUser();
    await using server = await startNatsServer({
      config: `authorization { users = [ { nkey: ${user.getPublicKey()} } ] }`,
    });
    await expect(
      callWith(server.url, { authenticator: nkeyAuthenticator(user.getSeed()) }),
    ).resolves.toEqual({ text: "authenticated" });
    const stranger = nkeys.createUser();
    await expect(
      connect({ servers: server.url, authenticator: nkeyAuthenticator(stranger.getSeed()) }),
    ).rejects.toThrow(/Authorization Violation/i);
  });

  it("TLS, with a certificate the test makes", async () => {
    const { ca, cert, key } = makeCertificates();
    await using server = await startNatsServer({
      runtime: "binary", // the config names certificate files on this machine
      config: `tls { cert_file: "${cert}", key_file: "${key}" }`,
    });
    const url = server.url.replace("nats://", "tls://");
    await expect(callWith(url, { tls: { caFile: ca } })).resolves.toEqual({
      text: "authenticated",
    });
    // A client that does not trust the CA is refused by its own TLS check.
    await expect(connect({ servers: url, tls: {}, reconnect: false })).rejects.toThrow();
  });
});
