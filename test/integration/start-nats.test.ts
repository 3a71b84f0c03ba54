/**
 * `startNats` (ricochet/testing) in each runtime it offers: a server that keeps its JetStream store
 * across restart and kill, pauses, applies a config, forms a cluster that survives a node's death,
 * and falls back, saying why, when a runtime is not there. The container cases run where a Docker
 * engine answers (CI installs one); elsewhere they are skipped and the output says so.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerHost, loadTestcontainers } from "../../src/testing/nats/container.js";
import { type NatsTestServer, startNats } from "../../src/testing/nats/index.js";

const docker = await loadTestcontainers()
  .then((tc) => dockerHost(tc, 5000))
  .then(
    (host) => host,
    () => undefined,
  );
if (docker === undefined) {
  console.log("[start-nats.test] no Docker engine answers here: the container cases are skipped");
}

/** Resolves once `nc` reports that it reconnected. */
async function reconnected(nc: NatsConnection): Promise<void> {
  for await (const s of nc.status()) if (s.type === "reconnect") return;
}

function runtimeCases(runtime: "binary" | "container") {
  describe(`one server (${runtime})`, () => {
    let nats: NatsTestServer;
    beforeAll(async () => {
      nats = await startNats({ runtime });
    });
    afterAll(() => nats.close());

    it("serves JetStream and keeps the store across a restart and a kill", async () => {
      expect(nats.runtime).toBe(runtime);
      expect(nats.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
      const nc = await connect({
        servers: nats.url,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 50,
      });
      try {
        const jsm = await jetstreamManager(nc);
        await jsm.streams.add({ name: "KEEP", subjects: ["keep.>"] });
        await nc.request("keep.a", "1"); // stored (the ack is the reply)

        let back = reconnected(nc);
        await nats.restart();
        await back;
        expect((await jsm.streams.info("KEEP")).state.messages).toBe(1);

        back = reconnected(nc);
        await nats.node("n1").kill();
        expect(nats.nodes[0]?.running).toBe(false);
        await nats.node("n1").start();
        await back;
        expect((await jsm.streams.info("KEEP")).state.messages).toBe(1);
        expect(nats.url).toBe(nats.nodes[0]?.url); // the same URL throughout
      } finally {
        await nc.close();
      }
    });

    it("pauses: nothing is answered until it resumes", async () => {
      const nc = await connect({ servers: nats.url });
      try {
        await nats.nodes[0]?.pause();
        const pending = nc.flush();
        const early = await Promise.race([
          pending.then(() => "answered"),
          new Promise((r) => setTimeout(() => r("silent"), 300)),
        ]);
        expect(early).toBe("silent");
        await nats.nodes[0]?.resume();
        await pending;
      } finally {
        await nc.close();
      }
    });
  });

  it(`applies a config: authorization (${runtime})`, async () => {
    await using nats = await startNats({
      runtime,
      config: `authorization { users = [ { user: app, password: "pw" } ] }`,
    });
    await expect(connect({ servers: nats.url, reconnect: false })).rejects.toThrow(
      /Authorization Violation/i,
    );
    const nc = await connect({ servers: nats.url, user: "app", pass: "pw" });
    await nc.close();
  });

  it(`forms a cluster of 3 that keeps a leader through a node's death (${runtime})`, async () => {
    await using nats = await startNats({ runtime, cluster: true });
    expect(nats.nodes.map((n) => n.name)).toEqual(["n1", "n2", "n3"]);
    expect(nats.urls).toHaveLength(3);
    const leader = await nats.waitForMetaLeader();
    const nc = await connect({ servers: nats.urls });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "R3", subjects: ["r3.>"], num_replicas: 3 });
      await nats.node(leader).kill();
      const next = await nats.waitForMetaLeader();
      expect(next).not.toBe(leader);
      await nats.node(leader).start();
      await nats.waitForMetaLeader();
      expect(nats.nodes.every((n) => n.running)).toBe(true);
      expect(await nats.streamLeader("R3")).toMatch(/^n[123]$/);
    } finally {
      await nc.close();
    }
  });
}

describe("binary runtime", () => runtimeCases("binary"));
describe.skipIf(docker === undefined)("container runtime", () => runtimeCases("container"));

describe("choosing a runtime", () => {
  it.skipIf(docker === undefined)(
    "falls back to the binary when the container cannot start, and says why",
    async () => {
      await using nats = await startNats({ image: "local/ricochet-no-such-image:0" });
      expect(nats.runtime).toBe("binary");
      expect(nats.description).toMatch(
        /^nats-server: 1 process of nats-server at nats:\/\/.*no container: the container did not start/,
      );
    },
  );

  it("uses a server it was given, and refuses to fail it", async () => {
    await using own = await startNats({ runtime: "binary" });
    await using nats = await startNats({ runtime: "external", url: own.url });
    expect(nats.runtime).toBe("external");
    expect(nats.url).toBe(own.url);
    await expect(nats.kill()).rejects.toThrow(/external.*cannot be stopped, killed/);
    await expect(startNats({ runtime: "external", url: own.url, cluster: true })).rejects.toThrow(
      /cannot be given a config or made a cluster/,
    );
  });

  it("says what is wrong with its options", async () => {
    await expect(startNats({ cluster: 2 })).rejects.toThrow(/at least 3/);
    await expect(startNats({ runtime: "docker" as "container" })).rejects.toThrow(
      /runtime must be "auto", "container", "binary" or "external"/,
    );
    await expect(startNats({ runtime: "binary", binary: "no-such-nats-server" })).rejects.toThrow(
      /nats-server was not found on PATH/,
    );
  });
});
