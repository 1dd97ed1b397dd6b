/**
 * A deliberately narrow renderer for Helm charts, for CI machines without the `helm` binary.
 *
 * It implements Go's text/template syntax (actions, trim markers, pipelines, variables, if/else,
 * range, with, define/template) and only the functions this project's chart uses. Anything else,
 * a function, a construct, a value Helm would print differently, fails with UnsupportedTemplateError
 * naming the file and line: it never guesses. Users render with real Helm (deploy/ci/helm-validate.yml).
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";

export class UnsupportedTemplateError extends Error {
  override name = "UnsupportedTemplateError";
}
/** An error real Helm would raise too (required value missing, nil pointer). */
export class TemplateExecError extends Error {
  override name = "TemplateExecError";
}

// ---------------------------------------------------------------- lexing

interface Where {
  file: string;
  line: number;
}
type Piece = { kind: "text"; text: string } | { kind: "action"; src: string; at: Where };

function lexTemplate(text: string, file: string): Piece[] {
  const pieces: Piece[] = [];
  let i = 0;
  let trimNextText = false;
  const lineAt = (pos: number) => text.slice(0, pos).split("\n").length;
  while (i < text.length) {
    const open = text.indexOf("{{", i);
    let chunk = open === -1 ? text.slice(i) : text.slice(i, open);
    if (trimNextText) chunk = chunk.replace(/^[ \t\r\n]+/, "");
    trimNextText = false;
    if (open === -1) {
      pieces.push({ kind: "text", text: chunk });
      break;
    }
    const trimLeft = text[open + 2] === "-" && /[ \t\r\n]/.test(text[open + 3] ?? "");
    if (trimLeft) chunk = chunk.replace(/[ \t\r\n]+$/, "");
    pieces.push({ kind: "text", text: chunk });
    const bodyStart = open + (trimLeft ? 3 : 2);
    // Find the closing }}, skipping over quoted strings and comments.
    let j = bodyStart;
    let close = -1;
    while (j < text.length) {
      const c = text[j]!;
      if (text.startsWith("/*", j)) {
        const end = text.indexOf("*/", j + 2);
        if (end === -1) break;
        j = end + 2;
        continue;
      }
      if (c === '"' || c === "`") {
        j++;
        while (j < text.length && text[j] !== c) j += text[j] === "\\" && c === '"' ? 2 : 1;
        j++;
        continue;
      }
      if (text.startsWith("}}", j)) {
        close = j;
        break;
      }
      j++;
    }
    const at = { file, line: lineAt(open) };
    if (close === -1) throw new UnsupportedTemplateError(`${file}:${at.line}: unclosed action`);
    const trimRight = text[close - 1] === "-" && /[ \t\r\n]/.test(text[close - 2] ?? "");
    const src = text.slice(bodyStart, trimRight ? close - 1 : close).trim();
    if (!(src.startsWith("/*") && src.endsWith("*/"))) pieces.push({ kind: "action", src, at });
    trimNextText = trimRight;
    i = close + 2;
  }
  return pieces;
}

// ---------------------------------------------------------------- expressions

type Tok =
  | { t: "str"; v: string }
  | { t: "num"; v: number }
  | { t: "bool"; v: boolean }
  | { t: "nil" }
  | { t: "field"; path: string[] } // .a.b, or [] for "."
  | { t: "var"; name: string; path: string[] } // $x.a.b
  | { t: "ident"; v: string }
  | { t: "(" }
  | { t: ")" }
  | { t: "|" }
  | { t: ":=" }
  | { t: "=" }
  | { t: "," };

function tokenize(src: string, at: Where): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  const fail = (msg: string): never => {
    throw new UnsupportedTemplateError(`${at.file}:${at.line}: ${msg} in {{ ${src} }}`);
  };
  const fieldChain = (): string[] => {
    const path: string[] = [];
    while (src[i] === "." && /[A-Za-z_]/.test(src[i + 1] ?? "")) {
      i++;
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      path.push(m[0]);
      i += m[0].length;
    }
    return path;
  };
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      let j = i + 1;
      let s = "";
      while (j < src.length && src[j] !== '"') {
        if (src[j] === "\\") {
          const e = src[j + 1];
          const map: Record<string, string> = { n: "\n", t: "\t", '"': '"', "\\": "\\", r: "\r" };
          if (e === undefined || map[e] === undefined) fail(`unsupported string escape \\${e}`);
          s += map[e!];
          j += 2;
        } else s += src[j++];
      }
      if (src[j] !== '"') fail("unterminated string");
      out.push({ t: "str", v: s });
      i = j + 1;
    } else if (c === "`") {
      const j = src.indexOf("`", i + 1);
      if (j === -1) fail("unterminated raw string");
      out.push({ t: "str", v: src.slice(i + 1, j) });
      i = j + 1;
    } else if (/[0-9-]/.test(c) && /^-?[0-9]/.test(src.slice(i))) {
      const m = /^-?[0-9]+(\.[0-9]+)?/.exec(src.slice(i))!;
      out.push({ t: "num", v: Number(m[0]) });
      i += m[0].length;
    } else if (c === ".") {
      if (/[A-Za-z_]/.test(src[i + 1] ?? "")) out.push({ t: "field", path: fieldChain() });
      else {
        i++;
        out.push({ t: "field", path: [] });
      }
    } else if (c === "$") {
      const m = /^\$[A-Za-z0-9_]*/.exec(src.slice(i))!;
      i += m[0].length;
      out.push({ t: "var", name: m[0], path: fieldChain() });
    } else if (c === "(" || c === ")" || c === "|" || c === ",") {
      out.push({ t: c } as Tok);
      i++;
    } else if (src.startsWith(":=", i)) {
      out.push({ t: ":=" });
      i += 2;
    } else if (c === "=") {
      out.push({ t: "=" });
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      i += m[0].length;
      if (m[0] === "true" || m[0] === "false") out.push({ t: "bool", v: m[0] === "true" });
      else if (m[0] === "nil") out.push({ t: "nil" });
      else out.push({ t: "ident", v: m[0] });
      if (src[i] === ".") fail("a field chain after an identifier");
    } else {
      fail(`unexpected character ${JSON.stringify(c)}`);
    }
  }
  return out;
}

type Operand =
  | { k: "lit"; v: unknown }
  | { k: "field"; path: string[] }
  | { k: "var"; name: string; path: string[] }
  | { k: "pipe"; pipe: Pipeline };
interface Cmd {
  /** A function name, or undefined when the command is a single operand (possibly a method call). */
  fn?: string;
  args: Operand[];
}
interface Pipeline {
  decl?: { names: string[]; op: ":=" | "=" };
  cmds: Cmd[];
  at: Where;
  src: string;
}

function parsePipeline(toks: Tok[], at: Where, src: string): Pipeline {
  let pos = 0;
  const fail = (msg: string): never => {
    throw new UnsupportedTemplateError(`${at.file}:${at.line}: ${msg} in {{ ${src} }}`);
  };
  let decl: Pipeline["decl"];
  // `$x :=`, `$x =`, or `$i, $v :=` (range).
  const declEnd = toks.findIndex((t) => t.t === ":=" || t.t === "=");
  if (declEnd !== -1) {
    const names: string[] = [];
    for (let k = 0; k < declEnd; k++) {
      const t = toks[k]!;
      if (t.t === "var" && t.path.length === 0) names.push(t.name);
      else if (t.t !== ",") fail("unsupported declaration");
    }
    decl = { names, op: (toks[declEnd] as { t: ":=" | "=" }).t };
    pos = declEnd + 1;
  }
  const parseCmds = (stopAtParen: boolean): Cmd[] => {
    const cmds: Cmd[] = [];
    let cur: Cmd | undefined;
    while (pos < toks.length) {
      const t = toks[pos]!;
      if (t.t === ")") {
        if (!stopAtParen) fail("unbalanced )");
        break;
      }
      pos++;
      if (t.t === "|") {
        if (!cur) fail("empty command before |");
        cmds.push(cur!);
        cur = undefined;
        continue;
      }
      let operand: Operand | undefined;
      if (t.t === "ident") {
        if (cur) fail(`function ${t.v} used as an argument (wrap it in parentheses)`);
        cur = { fn: t.v, args: [] };
        continue;
      }
      if (t.t === "str" || t.t === "num" || t.t === "bool") operand = { k: "lit", v: t.v };
      else if (t.t === "nil") operand = { k: "lit", v: null };
      else if (t.t === "field") operand = { k: "field", path: t.path };
      else if (t.t === "var") operand = { k: "var", name: t.name, path: t.path };
      else if (t.t === "(") {
        const inner = parseCmds(true);
        if (toks[pos]?.t !== ")") fail("unbalanced (");
        pos++;
        operand = { k: "pipe", pipe: { cmds: inner, at, src } };
      } else fail(`unexpected ${t.t}`);
      if (!cur) cur = { args: [operand!] };
      else cur.args.push(operand!);
    }
    if (cur) cmds.push(cur);
    if (cmds.length === 0) fail("empty pipeline");
    return cmds;
  };
  const cmds = parseCmds(false);
  if (pos !== toks.length) fail("trailing tokens");
  return { decl, cmds, at, src };
}

// ---------------------------------------------------------------- template tree

type Node =
  | { n: "text"; text: string }
  | { n: "print"; pipe: Pipeline }
  | { n: "if"; branches: { pipe: Pipeline; body: Node[] }[]; else?: Node[] }
  | { n: "range"; pipe: Pipeline; body: Node[]; else?: Node[] }
  | { n: "with"; pipe: Pipeline; body: Node[]; else?: Node[] }
  | { n: "template"; name: string; pipe?: Pipeline; at: Where };

interface Parsed {
  body: Node[];
  defines: Map<string, Node[]>;
}

function parseTemplate(text: string, file: string): Parsed {
  const pieces = lexTemplate(text, file);
  const defines = new Map<string, Node[]>();
  let i = 0;
  const pipeOf = (src: string, at: Where) => parsePipeline(tokenize(src, at), at, src);
  // Parses nodes until one of the stop keywords; returns the nodes and the stop action's source.
  const parseList = (stops: string[], depth: number): { nodes: Node[]; stop?: string; at?: Where } => {
    const nodes: Node[] = [];
    while (i < pieces.length) {
      const p = pieces[i++]!;
      if (p.kind === "text") {
        if (p.text) nodes.push({ n: "text", text: p.text });
        continue;
      }
      const kw = /^([a-z]+)\b\s*([\s\S]*)$/.exec(p.src);
      const word = kw?.[1];
      const rest = kw?.[2] ?? "";
      if (word && (stops.includes(word) || (word === "else" && stops.includes("else")))) {
        return { nodes, stop: p.src, at: p.at };
      }
      if (word === "end" || word === "else") {
        throw new UnsupportedTemplateError(`${p.at.file}:${p.at.line}: unexpected {{ ${p.src} }}`);
      }
      if (word === "if" || word === "with" || word === "range") {
        const first = pipeOf(rest, p.at);
        const inner = parseList(["else", "end"], depth + 1);
        if (!inner.stop) throw new UnsupportedTemplateError(`${p.at.file}:${p.at.line}: missing {{ end }}`);
        let elseNodes: Node[] | undefined;
        const branches = [{ pipe: first, body: inner.nodes }];
        let stop = inner.stop;
        let stopAt = inner.at!;
        while (stop.startsWith("else")) {
          const elseRest = stop.slice(4).trim();
          const next = parseList(["else", "end"], depth + 1);
          if (!next.stop) throw new UnsupportedTemplateError(`${p.at.file}:${p.at.line}: missing {{ end }}`);
          if (elseRest.startsWith("if ") && word === "if") {
            branches.push({ pipe: pipeOf(elseRest.slice(3), stopAt), body: next.nodes });
          } else if (elseRest === "") {
            elseNodes = next.nodes;
            if (next.stop !== "end") {
              throw new UnsupportedTemplateError(`${stopAt.file}:${stopAt.line}: else after else`);
            }
          } else {
            throw new UnsupportedTemplateError(`${stopAt.file}:${stopAt.line}: unsupported {{ ${stop} }}`);
          }
          stop = next.stop;
          stopAt = next.at!;
        }
        if (word === "if") nodes.push({ n: "if", branches, else: elseNodes });
        else nodes.push({ n: word, pipe: first, body: inner.nodes, else: elseNodes });
        continue;
      }
      if (word === "define") {
        if (depth !== 0)
          throw new UnsupportedTemplateError(`${p.at.file}:${p.at.line}: define inside a block`);
        const name = /^"([^"]+)"$/.exec(rest)?.[1];
        if (!name)
          throw new UnsupportedTemplateError(`${p.at.file}:${p.at.line}: define needs a quoted name`);
        const inner = parseList(["end"], depth + 1);
        if (inner.stop !== "end")
          throw new UnsupportedTemplateError(`${p.at.file}:${p.at.line}: missing {{ end }}`);
        defines.set(name, inner.nodes);
        continue;
      }
      if (word === "template") {
        const m = /^"([^"]+)"\s*([\s\S]*)$/.exec(rest);
        if (!m) throw new UnsupportedTemplateError(`${p.at.file}:${p.at.line}: template needs a quoted name`);
        nodes.push({ n: "template", name: m[1]!, pipe: m[2] ? pipeOf(m[2], p.at) : undefined, at: p.at });
        continue;
      }
      if (word && ["block", "break", "continue"].includes(word)) {
        throw new UnsupportedTemplateError(`${p.at.file}:${p.at.line}: {{ ${word} }} is not supported`);
      }
      nodes.push({ n: "print", pipe: pipeOf(p.src, p.at) });
    }
    return { nodes };
  };
  const top = parseList([], 0);
  return { body: top.nodes, defines };
}

// ---------------------------------------------------------------- evaluation

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === "") return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object") return Object.keys(v as object).length === 0;
  return false;
}

/** Go's %v for the kinds of value Helm values hold; anything Helm prints oddly fails instead. */
function goString(v: unknown, at: Where): string {
  if (v === undefined || v === null) return ""; // Helm replaces "<no value>" with ""
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") {
    // Values are float64 in Helm; %v uses %g, which turns 1e6 and up into 1e+06.
    if (!Number.isFinite(v) || Math.abs(v) >= 1e6 || (v !== 0 && Math.abs(v) < 1e-4)) {
      throw new UnsupportedTemplateError(
        `${at.file}:${at.line}: printing ${v} (Helm would print %g form); quote it`,
      );
    }
    return String(v);
  }
  throw new UnsupportedTemplateError(
    `${at.file}:${at.line}: printing a ${Array.isArray(v) ? "list" : "map"} directly (Go prints map[...]); use toYaml`,
  );
}

function goQuote(s: string, at: Where): string {
  if (/[^\x20-\x7e\n\t]/.test(s)) {
    throw new UnsupportedTemplateError(`${at.file}:${at.line}: quote of a non-ASCII or control character`);
  }
  return JSON.stringify(s);
}

function indentText(n: number, s: string): string {
  const pad = " ".repeat(n);
  return pad + s.replaceAll("\n", `\n${pad}`);
}

/** Helm's toYaml: sigs.k8s.io/yaml (keys sorted), without the trailing newline. */
function toYaml(v: unknown): string {
  if (v === undefined || v === null) return "null";
  return stringifyYaml(v, { sortMapEntries: true, indentSeq: false, lineWidth: 0 }).replace(/\n$/, "");
}

type Scope = Map<string, unknown>[];

interface Ctx {
  defines: Map<string, Node[]>;
  root: unknown;
  /** Include nesting, to stop runaway recursion. */
  depth: number;
  /** Go's missingkey=error, as `helm lint --strict` renders. */
  strict: boolean;
}

function lookup(base: unknown, path: string[], at: Where, label: string, strict: boolean): unknown {
  let cur = base;
  for (let k = 0; k < path.length; k++) {
    const key = path[k]!;
    if (strict && cur && typeof cur === "object" && !Array.isArray(cur) && !(key in cur)) {
      throw new TemplateExecError(
        `${at.file}:${at.line}: map has no entry for key "${key}" (${label}.${path.slice(0, k + 1).join(".")})`,
      );
    }
    if (cur === undefined || cur === null) {
      throw new TemplateExecError(
        `${at.file}:${at.line}: nil pointer evaluating interface {}.${key} (${label}.${path.slice(0, k + 1).join(".")})`,
      );
    }
    if (typeof cur !== "object" || Array.isArray(cur)) {
      throw new TemplateExecError(`${at.file}:${at.line}: can't evaluate field ${key} in a ${typeof cur}`);
    }
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function getVar(scope: Scope, name: string, at: Where): unknown {
  for (let k = scope.length - 1; k >= 0; k--) if (scope[k]!.has(name)) return scope[k]!.get(name);
  throw new UnsupportedTemplateError(`${at.file}:${at.line}: undefined variable ${name}`);
}

function evalOperand(
  op: Operand,
  dot: unknown,
  scope: Scope,
  ctx: Ctx,
  at: Where,
  args: unknown[] = [],
): unknown {
  switch (op.k) {
    case "lit":
      return op.v;
    case "pipe":
      return evalPipeline(op.pipe, dot, scope, ctx);
    case "var":
      return lookup(getVar(scope, op.name, at), op.path, at, op.name, ctx.strict);
    case "field": {
      // A method call such as .Files.Get "path": the last element is a function.
      const value = lookup(dot, op.path, at, "", ctx.strict);
      if (typeof value === "function") return (value as (...a: unknown[]) => unknown)(...args);
      if (args.length > 0)
        throw new UnsupportedTemplateError(`${at.file}:${at.line}: arguments to a non-function field`);
      return value;
    }
  }
}

function evalCmd(cmd: Cmd, piped: unknown[], dot: unknown, scope: Scope, ctx: Ctx, at: Where): unknown {
  if (!cmd.fn) {
    const [head, ...restOps] = cmd.args;
    const rest = [...restOps.map((o) => evalOperand(o, dot, scope, ctx, at)), ...piped];
    if (head!.k === "field" && rest.length > 0) return evalOperand(head!, dot, scope, ctx, at, rest);
    if (rest.length > 0)
      throw new UnsupportedTemplateError(`${at.file}:${at.line}: can't give arguments to a value`);
    return evalOperand(head!, dot, scope, ctx, at);
  }
  const name = cmd.fn;
  // `and` evaluates lazily, as Go 1.18+ does.
  if (name === "and") {
    const ops = cmd.args;
    let last: unknown;
    for (const op of ops) {
      last = evalOperand(op, dot, scope, ctx, at);
      if (isEmpty(last)) return last;
    }
    for (const p of piped) {
      last = p;
      if (isEmpty(last)) return last;
    }
    return last;
  }
  const args = [...cmd.args.map((o) => evalOperand(o, dot, scope, ctx, at)), ...piped];
  const fn = FUNCTIONS[name];
  if (!fn) {
    throw new UnsupportedTemplateError(
      `${at.file}:${at.line}: function "${name}" is not supported by this renderer (supported: ${Object.keys(FUNCTIONS).sort().join(", ")})`,
    );
  }
  return fn(args, { at, ctx });
}

function evalPipeline(pipe: Pipeline, dot: unknown, scope: Scope, ctx: Ctx): unknown {
  let value: unknown;
  let first = true;
  for (const cmd of pipe.cmds) {
    value = evalCmd(cmd, first ? [] : [value], dot, scope, ctx, pipe.at);
    first = false;
  }
  return value;
}

function assign(pipe: Pipeline, value: unknown, scope: Scope): void {
  if (!pipe.decl) return;
  const name = pipe.decl.names[0]!;
  if (pipe.decl.op === ":=") {
    scope[scope.length - 1]!.set(name, value);
    return;
  }
  for (let k = scope.length - 1; k >= 0; k--) {
    if (scope[k]!.has(name)) {
      scope[k]!.set(name, value);
      return;
    }
  }
  throw new UnsupportedTemplateError(`${pipe.at.file}:${pipe.at.line}: assignment to undeclared ${name}`);
}

function exec(nodes: Node[], dot: unknown, scope: Scope, ctx: Ctx): string {
  let out = "";
  for (const node of nodes) {
    switch (node.n) {
      case "text":
        out += node.text;
        break;
      case "print": {
        const v = evalPipeline(node.pipe, dot, scope, ctx);
        if (node.pipe.decl) assign(node.pipe, v, scope);
        else out += goString(v, node.pipe.at);
        break;
      }
      case "if": {
        let done = false;
        for (const b of node.branches) {
          const inner: Scope = [...scope, new Map()];
          const v = evalPipeline(b.pipe, dot, inner, ctx);
          if (b.pipe.decl)
            throw new UnsupportedTemplateError(`${b.pipe.at.file}:${b.pipe.at.line}: declaration in if`);
          if (!isEmpty(v)) {
            out += exec(b.body, dot, inner, ctx);
            done = true;
            break;
          }
        }
        if (!done && node.else) out += exec(node.else, dot, [...scope, new Map()], ctx);
        break;
      }
      case "with": {
        const inner: Scope = [...scope, new Map()];
        const v = evalPipeline(node.pipe, dot, inner, ctx);
        if (node.pipe.decl) assign(node.pipe, v, inner);
        if (!isEmpty(v)) out += exec(node.body, v, inner, ctx);
        else if (node.else) out += exec(node.else, dot, [...scope, new Map()], ctx);
        break;
      }
      case "range": {
        const v = evalPipeline(node.pipe, dot, scope, ctx);
        const names = node.pipe.decl?.names ?? [];
        if (node.pipe.decl && node.pipe.decl.op !== ":=") {
          throw new UnsupportedTemplateError(`${node.pipe.at.file}:${node.pipe.at.line}: range needs :=`);
        }
        let entries: [unknown, unknown][];
        if (v === undefined || v === null) entries = [];
        else if (Array.isArray(v)) entries = v.map((x, k) => [k, x]);
        else if (typeof v === "object") {
          entries = Object.keys(v as object)
            .sort()
            .map((k) => [k, (v as Record<string, unknown>)[k]]);
        } else {
          throw new UnsupportedTemplateError(
            `${node.pipe.at.file}:${node.pipe.at.line}: range over a ${typeof v}`,
          );
        }
        if (entries.length === 0) {
          if (node.else) out += exec(node.else, dot, [...scope, new Map()], ctx);
          break;
        }
        for (const [key, item] of entries) {
          const frame = new Map<string, unknown>();
          if (names.length === 1) frame.set(names[0]!, item);
          if (names.length === 2) {
            frame.set(names[0]!, key);
            frame.set(names[1]!, item);
          }
          out += exec(node.body, item, [...scope, frame], ctx);
        }
        break;
      }
      case "template": {
        const data = node.pipe ? evalPipeline(node.pipe, dot, scope, ctx) : undefined;
        out += runNamed(node.name, data, ctx, node.at);
        break;
      }
    }
  }
  return out;
}

function runNamed(name: string, data: unknown, ctx: Ctx, at: Where): string {
  const body = ctx.defines.get(name);
  if (!body) throw new TemplateExecError(`${at.file}:${at.line}: no template "${name}"`);
  if (ctx.depth > 50) throw new TemplateExecError(`${at.file}:${at.line}: include recursion too deep`);
  return exec(body, data, [new Map([["$", data]])], { ...ctx, depth: ctx.depth + 1 });
}

type Fn = (args: unknown[], env: { at: Where; ctx: Ctx }) => unknown;

function arity(name: string, args: unknown[], n: number, at: Where): void {
  if (args.length !== n) {
    throw new TemplateExecError(`${at.file}:${at.line}: ${name} takes ${n} arguments, got ${args.length}`);
  }
}
function asString(name: string, v: unknown, at: Where): string {
  if (typeof v !== "string") {
    throw new UnsupportedTemplateError(
      `${at.file}:${at.line}: ${name} of a ${v === null ? "nil" : typeof v}, not a string`,
    );
  }
  return v;
}
function asInt(name: string, v: unknown, at: Where): number {
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new UnsupportedTemplateError(
      `${at.file}:${at.line}: ${name} needs whole numbers, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** The only functions the chart may use. Each follows Go/Sprig semantics for the argument kinds allowed. */
const FUNCTIONS: Record<string, Fn> = {
  include: (args, { at, ctx }) => {
    arity("include", args, 2, at);
    return runNamed(asString("include", args[0], at), args[1], ctx, at);
  },
  default: (args, { at }) => {
    arity("default", args, 2, at);
    return isEmpty(args[1]) ? args[0] : args[1];
  },
  required: (args, { at }) => {
    arity("required", args, 2, at);
    if (args[1] === undefined || args[1] === null || args[1] === "")
      throw new TemplateExecError(String(args[0]));
    return args[1];
  },
  quote: (args, { at }) =>
    args
      .filter((a) => a !== undefined && a !== null)
      .map((a) => goQuote(goString(a, at), at))
      .join(" "),
  print: (args, { at }) => {
    // fmt.Sprint: a space between operands when neither side is a string.
    let s = "";
    args.forEach((a, k) => {
      if (k > 0 && typeof a !== "string" && typeof args[k - 1] !== "string") s += " ";
      s += goString(a, at);
    });
    return s;
  },
  printf: (args, { at }) => {
    const format = asString("printf", args[0], at);
    let k = 1;
    const out = format.replace(/%([%sqv]|[^%sqv]?)/g, (_m, verb: string) => {
      if (verb === "%") return "%";
      if (!["s", "v", "q"].includes(verb)) {
        throw new UnsupportedTemplateError(
          `${at.file}:${at.line}: printf verb %${verb} (only %s %v %q; %d on a values number prints %!d(float64=...) in Helm)`,
        );
      }
      if (k >= args.length) throw new TemplateExecError(`${at.file}:${at.line}: printf: missing argument`);
      const s = goString(args[k++], at);
      return verb === "q" ? goQuote(s, at) : s;
    });
    if (k !== args.length) throw new TemplateExecError(`${at.file}:${at.line}: printf: extra arguments`);
    return out;
  },
  toYaml: (args, { at }) => {
    arity("toYaml", args, 1, at);
    return toYaml(args[0]);
  },
  nindent: (args, { at }) => {
    arity("nindent", args, 2, at);
    return `\n${indentText(asInt("nindent", args[0], at), asString("nindent", args[1], at))}`;
  },
  trunc: (args, { at }) => {
    arity("trunc", args, 2, at);
    const n = asInt("trunc", args[0], at);
    const s = asString("trunc", args[1], at);
    return n >= 0 ? s.slice(0, n) : s.slice(Math.max(0, s.length + n));
  },
  trimSuffix: (args, { at }) => {
    arity("trimSuffix", args, 2, at);
    const suffix = asString("trimSuffix", args[0], at);
    const s = asString("trimSuffix", args[1], at);
    return suffix && s.endsWith(suffix) ? s.slice(0, -suffix.length) : s;
  },
  replace: (args, { at }) => {
    arity("replace", args, 3, at);
    return asString("replace", args[2], at).replaceAll(
      asString("replace", args[0], at),
      asString("replace", args[1], at),
    );
  },
  contains: (args, { at }) => {
    arity("contains", args, 2, at);
    return asString("contains", args[1], at).includes(asString("contains", args[0], at));
  },
  sha256sum: (args, { at }) => {
    arity("sha256sum", args, 1, at);
    return createHash("sha256")
      .update(asString("sha256sum", args[0], at))
      .digest("hex");
  },
  add: (args, { at }) => args.reduce<number>((sum, a) => sum + asInt("add", a, at), 0),
  not: (args, { at }) => {
    arity("not", args, 1, at);
    return isEmpty(args[0]);
  },
};

/** Names of the functions the renderer implements (everything else fails loudly). */
export const SUPPORTED_FUNCTIONS: readonly string[] = [...Object.keys(FUNCTIONS), "and"].sort();

// ---------------------------------------------------------------- chart level

/** Helm's value merge: maps merge key by key, everything else (lists included) replaces; null deletes. */
export function mergeValues(base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (
    base &&
    over &&
    typeof base === "object" &&
    typeof over === "object" &&
    !Array.isArray(base) &&
    !Array.isArray(over)
  ) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(over as Record<string, unknown>)) {
      if (v === null) delete out[k];
      else out[k] = mergeValues(out[k], v);
    }
    return out;
  }
  return over;
}

export interface RenderOptions {
  releaseName?: string;
  namespace?: string;
  /** Value files, applied over the chart's values.yaml in order (as `helm template -f a -f b`). */
  valueFiles?: string[];
  /** A missing map key is an error, as with `helm lint --strict` (Go's missingkey=error). */
  strict?: boolean;
}

export interface RenderedTemplate {
  /** "edgeway/templates/gateway-deployment.yaml", as helm template's `# Source:` lines name it. */
  source: string;
  text: string;
}

export interface ChartMeta {
  name: string;
  version: string;
  appVersion?: string;
}

export function loadValues(chartDir: string, valueFiles: string[] = []): Record<string, unknown> {
  let values: unknown = parseYaml(readFileSync(join(chartDir, "values.yaml"), "utf8")) ?? {};
  for (const f of valueFiles) values = mergeValues(values, parseYaml(readFileSync(f, "utf8")) ?? {});
  return values as Record<string, unknown>;
}

/** Renders every template of the chart as `helm template` would (same order: by file name). */
export function renderChart(chartDir: string, opts: RenderOptions = {}): RenderedTemplate[] {
  const chart = parseYaml(readFileSync(join(chartDir, "Chart.yaml"), "utf8")) as ChartMeta;
  if (existsSync(join(chartDir, "charts")) || existsSync(join(chartDir, "requirements.yaml"))) {
    throw new UnsupportedTemplateError(`${chartDir}: subcharts are not supported`);
  }
  const values = loadValues(chartDir, opts.valueFiles);
  const templatesDir = join(chartDir, "templates");
  const files = readdirSync(templatesDir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name))
    .sort();
  const defines = new Map<string, Node[]>();
  const bodies: { source: string; base: string; body: Node[] }[] = [];
  for (const file of files) {
    const rel = relative(chartDir, file).split("\\").join("/");
    const source = `${chart.name}/${rel}`;
    const parsed = parseTemplate(readFileSync(file, "utf8"), source);
    for (const [k, v] of parsed.defines) defines.set(k, v);
    // Helm makes every file a named template too, so include (print $.Template.BasePath "/x.yaml") works.
    defines.set(source, parsed.body);
    const base = rel.split("/").pop()!;
    bodies.push({ source, base, body: parsed.body });
  }
  const files_ = {
    Get: (path: unknown) => {
      const p = String(path);
      if (p.includes("..") || p.startsWith("/"))
        throw new TemplateExecError(`.Files.Get outside the chart: ${p}`);
      const full = join(chartDir, p);
      return existsSync(full) ? readFileSync(full, "utf8") : "";
    },
  };
  const out: RenderedTemplate[] = [];
  for (const { source, base, body } of bodies) {
    // Partials (_helpers.tpl) and NOTES.txt are not manifests; helm template does not print them.
    if (base.startsWith("_") || base === "NOTES.txt") continue;
    const root = {
      Values: values,
      Release: {
        Name: opts.releaseName ?? "edgeway",
        Namespace: opts.namespace ?? "default",
        Service: "Helm",
        IsInstall: true,
        IsUpgrade: false,
        Revision: 1,
      },
      Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion ?? "" },
      Template: { Name: source, BasePath: `${chart.name}/templates` },
      Files: files_,
    };
    const ctx: Ctx = { defines, root, depth: 0, strict: opts.strict ?? false };
    const text = exec(body, root, [new Map([["$", root]])], ctx);
    if (text.trim() === "") continue;
    out.push({ source, text });
  }
  return out;
}

/** The stream `helm template` prints: each template after a `---` and a `# Source:` line. */
export function formatRendered(rendered: RenderedTemplate[]): string {
  return rendered.map((r) => `---\n# Source: ${r.source}\n${r.text.replace(/^\n+/, "")}`).join("\n");
}

/**
 * Renders one template text with `data` as both `.` and `$` (its own defines available to include),
 * for tests and for checking a single template in isolation.
 */
export function renderTemplateText(text: string, data: unknown, name = "inline", strict = false): string {
  const parsed = parseTemplate(text, name);
  const ctx: Ctx = { defines: parsed.defines, root: data, depth: 0, strict };
  return exec(parsed.body, data, [new Map([["$", data]])], ctx);
}
