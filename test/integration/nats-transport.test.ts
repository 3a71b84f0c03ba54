import { natsPair } from "../support/nats-pair.js";
import { transportSuite } from "../transport.suite.js";

transportSuite("nats", natsPair);
