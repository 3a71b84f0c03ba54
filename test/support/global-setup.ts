/**
 * Vitest global setup: one nats-server for the integration tests that never stop it, or the server at
 * NATS_URL when that is set. Tests read the URL with `inject("natsUrl")`.
 */
import type { TestProject } from "vitest/node";
import { startNatsServer } from "./nats-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    natsUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const external = process.env.NATS_URL;
  if (external) {
    project.provide("natsUrl", external);
    return;
  }
  const server = await startNatsServer();
  project.provide("natsUrl", server.url);
  return () => server[Symbol.asyncDispose]();
}
