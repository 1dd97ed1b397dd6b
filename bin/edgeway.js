#!/usr/bin/env node
// The installed entry point. It is plain JavaScript on purpose: two settings must be in place before the
// first TypeScript file loads.
import { enableCompileCache } from "node:module";
import { setFlagsFromString } from "node:v8";

// V8's allocation-site pretenuring learns, from a burst of survivors (start-up, a slow upstream), to
// allocate request-scoped objects straight in the old generation, and never unlearns it: every
// request's garbage then waits for a full GC and scavenges take 10-17 ms instead of about 1 ms.
// A proxy's objects die young, so the gateway and the agent turn it off (docs/decisions.md).
setFlagsFromString("--no-allocation-site-pretenuring");

// Node's compile cache: with a warm cache Node skips the type stripper, which saves about 17 MB of RSS in
// every process (and the parse time). The cache lives in NODE_COMPILE_CACHE, else
// <tmpdir>/node-compile-cache, keyed by file content, so an edited file is stripped afresh.
// NODE_DISABLE_COMPILE_CACHE=1 turns it off.
enableCompileCache?.();

await import("./edgeway.ts");
