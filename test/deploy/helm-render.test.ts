import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import {
  formatRendered,
  mergeValues,
  renderChart,
  renderTemplateText,
  SUPPORTED_FUNCTIONS,
  TemplateExecError,
  UnsupportedTemplateError,
} from "../../deploy/tools/helm-render.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHART = join(ROOT, "deploy/helm/edgeway");
const GOLDEN = fileURLToPath(new URL("./fixtures/golden/", import.meta.url));
const r = (text: string, data: unknown = {}) => renderTemplateText(text, data);

t.test("trim markers, comments and plain text", async (t) => {
  t.equal(r("a  {{- 1 -}}  b"), "a1b");
  t.equal(r("a\n  {{- /* gone */ -}}\n  b"), "ab");
  t.equal(r("x {{/* kept spaces */}} y"), "x  y");
  t.equal(r("{{ 1 }}-{{ 2 }}"), "1-2", "a dash without a space is not a trim marker");
  t.equal(r('{{ "}}" }}'), "}}", "}} inside a string does not close the action");
});

t.test("fields, missing keys and nil pointers behave as in Helm", async (t) => {
  const data = { Values: { a: { b: "x" }, n: 3, z: 0 } };
  t.equal(r("{{ .Values.a.b }}", data), "x");
  t.equal(r("[{{ .Values.missing }}]", data), "[]", "a missing key prints nothing (Helm drops <no value>)");
  t.throws(
    () => r("{{ .Values.missing.deeper }}", data),
    TemplateExecError,
    "nil pointer evaluating interface {}",
  );
  t.equal(r("{{ .Values.n }}", data), "3");
  t.equal(r("{{ 0.5 }}", data), "0.5");
  t.throws(() => r("{{ .Values.a }}", data), /printing a map directly/);
  t.throws(() => r("{{ 1000000 }}"), /%g form/, "Helm would print 1e+06");
});

t.test("strict mode: a missing key is an error, as with helm lint --strict", async (t) => {
  const data = { Values: { a: { b: "x" } } };
  t.equal(renderTemplateText("{{ .Values.a.b }}", data, "s.yaml", true), "x");
  t.throws(
    () => renderTemplateText("{{ .Values.a.c }}", data, "s.yaml", true),
    /s\.yaml:1: map has no entry for key "c"/,
  );
  t.throws(
    () => renderTemplateText("{{ with .Values.z }}{{ end }}", data, "s.yaml", true),
    /no entry for key "z"/,
  );
  t.doesNotThrow(() => renderChart(CHART, { strict: true }), "the chart reads only values it defines");
});

t.test("if / else if / else, with, range and variables", async (t) => {
  const data = { list: ["a", "b"], map: { y: 2, x: 1 }, empty: [], t: true, s: "v", zero: 0 };
  t.equal(r("{{ if .t }}T{{ else }}F{{ end }}", data), "T");
  t.equal(r("{{ if .zero }}1{{ else if .s }}2{{ else }}3{{ end }}", data), "2");
  t.equal(r("{{ if .empty }}1{{ else }}E{{ end }}", data), "E", "empty lists are false");
  t.equal(r("{{ with .s }}<{{ . }}>{{ else }}none{{ end }}", data), "<v>");
  t.equal(r("{{ with .missing }}x{{ else }}none{{ end }}", data), "none");
  t.equal(r("{{ range .list }}[{{ . }}]{{ end }}", data), "[a][b]");
  t.equal(r("{{ range $i, $v := .list }}{{ $i }}={{ $v }};{{ end }}", data), "0=a;1=b;");
  t.equal(
    r("{{ range $k, $v := .map }}{{ $k }}={{ $v }};{{ end }}", data),
    "x=1;y=2;",
    "maps range in key order",
  );
  t.equal(r("{{ range .empty }}x{{ else }}none{{ end }}", data), "none");
  t.equal(r("{{ $x := .s }}{{ with .list }}{{ $x }}{{ $.s }}{{ end }}", data), "vv", "$ is the root");
  t.equal(
    r("{{ $x := 1 }}{{ if .t }}{{ $x = 2 }}{{ end }}{{ $x }}", data),
    "2",
    "= assigns the outer variable",
  );
  t.throws(
    () => r("{{ if .t }}{{ $y := 1 }}{{ end }}{{ $y }}", data),
    /undefined variable \$y/,
    "scoped to the block",
  );
});

t.test("define and include, pipelines and the supported functions", async (t) => {
  const tpl =
    '{{- define "x.name" -}}{{ .n | default "dflt" | trunc 3 }}{{- end -}}name: {{ include "x.name" . }}';
  t.equal(r(tpl, { n: "abcdef" }), "name: abc");
  t.equal(r(tpl, {}), "name: dfl");
  t.equal(r('{{ printf "%s-%s" "a" "b" | quote }}'), '"a-b"');
  t.equal(r('{{ print "0.0.0.0:" 9101 }}'), "0.0.0.0:9101");
  t.equal(r("{{ print 1 2 }}"), "1 2", "fmt.Sprint puts a space between two non-strings");
  t.equal(r('{{ "a-" | trimSuffix "-" }}{{ "a+b" | replace "+" "_" }}'), "aa_b");
  t.equal(r('{{ if contains "way" "edgeway" }}yes{{ end }}'), "yes");
  t.equal(r("{{ add 5 30 5 }}"), "40");
  t.equal(r("{{ and 1 0 }} {{ and 1 2 }} {{ not 0 }}"), "0 2 true");
  t.equal(
    r("{{ .m | toYaml }}", { m: { b: [1, 2], a: "x" } }),
    "a: x\nb:\n- 1\n- 2",
    "keys sorted, lists not indented",
  );
  t.equal(r("k:{{ .m | toYaml | nindent 2 }}", { m: { a: 1 } }), "k:\n  a: 1");
  t.equal(r('k:{{ "a\nb" | nindent 2 }}'), "k:\n  a\n  b");
  t.equal(r('{{ "x" | sha256sum }}'), "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
  t.throws(() => r('{{ required "need x" .x }}'), /need x/);
  t.same(
    SUPPORTED_FUNCTIONS,
    [
      "add",
      "and",
      "contains",
      "default",
      "include",
      "nindent",
      "not",
      "print",
      "printf",
      "quote",
      "replace",
      "required",
      "sha256sum",
      "toYaml",
      "trimSuffix",
      "trunc",
    ],
    "exactly the functions the chart uses",
  );
});

t.test("anything unsupported fails loudly, naming file and line", async (t) => {
  for (const fn of ["tpl", "eq", "or", "indent", "toJson", "lower", "b64enc", "lookup", "dict", "list"]) {
    t.throws(() => r(`{{ ${fn} 1 }}`), UnsupportedTemplateError, `${fn} is refused`);
  }
  t.throws(
    () => r('line1\n{{ lookup "v1" "Secret" "" "" }}'),
    /inline:2: function "lookup" is not supported/,
  );
  t.throws(() => r('{{ block "x" . }}{{ end }}'), /block/);
  t.throws(() => r('{{ printf "%d" 3 }}'), /printf verb %d/);
  t.throws(() => r("{{ if .x }}"), /missing \{\{ end \}\}/);
  t.throws(() => r("{{ end }}"), /unexpected/);
  t.throws(() => r("{{ .Capabilities.KubeVersion.Version }}", { Values: {} }), /nil pointer/);
  t.throws(() => r('{{ "a" | quote | upper }}'), /"upper" is not supported/);
});

t.test("mergeValues: maps merge, lists replace, null deletes", async (t) => {
  t.same(mergeValues({ a: { b: 1, c: 2 }, l: [1, 2], d: 1 }, { a: { c: 3 }, l: [9], d: null }), {
    a: { b: 1, c: 3 },
    l: [9],
  });
});

// The pinned output: what the chart renders for each value set. UPDATE_GOLDEN=1 rewrites the files after a
// deliberate chart change; review the diff like any other change.
const SETS = [
  ["defaults", []],
  ["production", [join(CHART, "examples/production.yaml")]],
  ["gateway-only", [join(CHART, "examples/gateway-only.yaml")]],
] as const;

t.test("the chart's rendered output is pinned", async (t) => {
  for (const [name, files] of SETS) {
    const text = formatRendered(
      renderChart(CHART, { releaseName: "edgeway", namespace: "edge", valueFiles: [...files] }),
    );
    const golden = join(GOLDEN, `${name}.yaml`);
    if (process.env["UPDATE_GOLDEN"] === "1" || !existsSync(golden)) writeFileSync(golden, text);
    t.equal(text, readFileSync(golden, "utf8"), `${name} matches test/deploy/fixtures/golden/${name}.yaml`);
  }
});

t.test("a config change changes the checksum annotation (pods roll)", async (t) => {
  const render = (extra: string[]) =>
    renderChart(CHART, { valueFiles: extra }).find((x) => x.source.endsWith("gateway-deployment.yaml"))!.text;
  const a = /checksum\/config: (\w+)/.exec(render([]))![1];
  const b = /checksum\/config: (\w+)/.exec(render([join(CHART, "examples/production.yaml")]))![1];
  t.not(a, b);
});
