import { expect, it } from "vitest";
import { startNatsServer } from "../support/nats-server.js";

it("fails at once, saying how to get nats-server, when the binary is missing", async () => {
  await expect(startNatsServer({ binary: "nats-server-that-does-not-exist" })).rejects.toThrow(
    /nats-server was not found on PATH\. Install it \(Debian\/Ubuntu: `apt-get install nats-server`.*NATS_URL=/,
  );
});
