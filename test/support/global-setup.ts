/**
 * Vitest global setup: one nats-server for the integration tests that never stop it, or the server at
 * NATS_URL when that is set. Tests read the URL with `inject("natsUrl")`. The line it prints says which
 * runtime serves the suite (a container, the local binary, or NATS_URL) and why.
 */
import type { TestProject } from "vitest/node";
import { startNats } from "../../src/testing/nats/index.js";

declare module "vitest" {
  export interface ProvidedContext {
    natsUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const server = await startNats(process.env.NATS_URL ? { runtime: "external" } : {});
  console.log(`[ricochet tests] ${server.description}`);
  project.provide("natsUrl", server.url);
  return () => server.close();
}
