import { rpcSuite } from "../rpc.suite.js";
import { natsPair } from "../support/nats-pair.js";

rpcSuite("nats", natsPair);
