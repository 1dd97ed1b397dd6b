import { once } from "node:events";
import { createServer, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import t from "tap";
import { UpstreamBody } from "../../../gateway/core/upstream/call.ts";

/** Records what the body asks of undici's controller. */
function controller() {
  const c = {
    paused: false,
    aborted: false,
    reason: undefined as Error | undefined,
    pause() {
      c.paused = true;
    },
    resume() {
      c.paused = false;
    },
    abort(reason: Error) {
      c.aborted = true;
      c.reason = reason;
    },
  };
  return c;
}

function body() {
  const b = new UpstreamBody();
  const c = controller();
  b.controller = c as unknown as UpstreamBody["controller"];
  const done: (Error | undefined)[] = [];
  b.onDone = (err) => done.push(err);
  return { b, c, done };
}

/** A real response to sink into, and what the client received. */
async function clientResponse(
  run: (res: ServerResponse) => void,
): Promise<{ status: number; text: string; error?: string }> {
  const server = createServer((_req, res) => run(res));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise((resolve) => {
      request({ port, host: "127.0.0.1" }, (res) => {
        let text = "";
        res.on("data", (d) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode!, text }));
        res.on("error", (e) => resolve({ status: res.statusCode!, text, error: e.message }));
      })
        .on("error", (e) => resolve({ status: 0, text: "", error: e.message }))
        .end();
    });
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

t.test("a body that arrived whole before the server sinks it is written in one end()", async (t) => {
  const { b, done } = body();
  b.deliver(Buffer.from("hello "));
  b.deliver(Buffer.from("world"));
  b.finish();
  const got = await clientResponse((res) => {
    res.writeHead(200);
    t.ok(b.sinkTo(res, () => t.fail("no error")));
  });
  t.same(got, { status: 200, text: "hello world" });
  t.same(done, [undefined], "onDone once, without error");
});

t.test("chunks after sinkTo go straight to the response; the end ends it", async (t) => {
  const { b, c, done } = body();
  b.deliver(Buffer.from("a"));
  const got = await clientResponse((res) => {
    res.writeHead(200);
    b.sinkTo(res, () => {});
    t.notOk(c.paused);
    setImmediate(() => {
      b.deliver(Buffer.from("b"));
      b.finish();
    });
  });
  t.equal(got.text, "ab");
  t.same(done, [undefined]);
});

t.test("pending chunks past the high-water mark pause the upstream until a consumer comes", async (t) => {
  const { b, c } = body();
  b.deliver(Buffer.alloc(40 * 1024));
  t.notOk(c.paused);
  b.deliver(Buffer.alloc(40 * 1024));
  t.ok(c.paused, "80 KiB unread: paused");
  b.resume(); // a Readable consumer
  await new Promise((r) => setImmediate(r));
  t.notOk(c.paused, "reading resumes it");
});

t.test("a Readable consumer gets what arrived earlier, in order, then the end", async (t) => {
  const { b, done } = body();
  b.deliver(Buffer.from("1"));
  b.deliver(Buffer.from("2"));
  b.finish();
  let text = "";
  for await (const chunk of b) text += chunk;
  t.equal(text, "12");
  t.same(done, [undefined]);
  // sinkTo after a Readable consumer took the body: the caller must pipe instead.
  const got = await clientResponse((res) => {
    t.notOk(
      b.sinkTo(res, () => {}),
      "refused",
    );
    res.end("piped");
  });
  t.equal(got.text, "piped");
});

t.test(
  "a failure before any consumer releases the upstream now and reaches the consumer later",
  async (t) => {
    const { b, done } = body();
    b.deliver(Buffer.from("partial"));
    const boom = new Error("reset");
    b.fail(boom);
    t.same(done, [boom], "released with the error at once");
    const errors: Error[] = [];
    const got = await clientResponse((res) => {
      res.writeHead(200, { "content-length": "100" });
      b.sinkTo(res, (err) => {
        errors.push(err);
        res.destroy(err);
      });
    });
    t.same(errors, [boom], "the server's mid-stream handler hears it");
    t.ok(got.error || got.text.length < 100, "the client sees a cut response, not a complete one");
  },
);

t.test("a failure while sinking runs the handler; destroy aborts the upstream quietly", async (t) => {
  const { b, c, done } = body();
  const errors: Error[] = [];
  await clientResponse((res) => {
    res.writeHead(200);
    b.sinkTo(res, (err) => {
      errors.push(err);
      res.destroy(err);
    });
    b.deliver(Buffer.from("x"));
    b.fail(new Error("idle body timeout"));
  });
  t.equal(errors.length, 1);
  t.equal(done.length, 1);

  const second = body();
  second.b.destroy(); // the client left: no listener, no crash
  await new Promise((r) => setImmediate(r));
  t.ok(second.c.aborted, "the upstream request is aborted");
  t.equal(second.done.length, 1);
  second.b.fail(new Error("aborted")); // undici then reports the abort: ignored
  t.equal(second.done.length, 1);
  t.notOk(c.aborted, "a finished body is never aborted");
});
