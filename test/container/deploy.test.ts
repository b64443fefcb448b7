// Static checks of the deployment files, fast enough for `npm test`. The container itself is
// built, run and stopped by test/container/run.sh (npm run test:container).
import { readFileSync } from "node:fs";
import { DEFAULT_CLOSE_TIMEOUT_MS } from "modelkit-ts/server";
import t from "tap";
import { parseAllDocuments } from "yaml";

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

interface Probe {
  httpGet?: { path?: string; port?: string | number };
  periodSeconds?: number;
  failureThreshold?: number;
}
interface Container {
  image?: string;
  ports?: { name?: string; containerPort?: number }[];
  env?: { name: string; value?: string }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean };
}
interface Manifest {
  kind?: string;
  spec?: {
    ports?: { port?: number; targetPort?: string | number }[];
    template?: {
      spec?: {
        terminationGracePeriodSeconds?: number;
        securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
        containers?: Container[];
      };
    };
  };
}

const manifests = parseAllDocuments(read("deploy/kubernetes.yaml")).map(
  (doc) => doc.toJS() as Manifest,
);
const deployment = manifests.find((m) => m.kind === "Deployment");
const service = manifests.find((m) => m.kind === "Service");
const pod = deployment?.spec?.template?.spec;
const container = pod?.containers?.[0];
const env = new Map((container?.env ?? []).map((e) => [e.name, e.value]));
const dockerfile = read("Dockerfile");

t.test("deploy/kubernetes.yaml holds a Deployment and a Service", async (t) => {
  t.ok(deployment, "Deployment");
  t.ok(service, "Service");
  t.ok(container, "one container");
});

t.test("probes: startup and readiness on /readyz, liveness on /livez", async (t) => {
  t.equal(container?.livenessProbe?.httpGet?.path, "/livez");
  t.equal(container?.readinessProbe?.httpGet?.path, "/readyz");
  t.equal(container?.startupProbe?.httpGet?.path, "/readyz");
  const period = container?.startupProbe?.periodSeconds;
  const threshold = container?.startupProbe?.failureThreshold;
  t.type(period, "number", "the startup probe's period is set, not Kubernetes' default");
  t.type(threshold, "number", "and its failure threshold");
  const startupBudget = Number(period) * Number(threshold);
  t.equal(startupBudget, 300, "slow-loading models get 5 minutes (docs/deployment.md)");
});

t.test(
  "terminationGracePeriodSeconds covers the drain delay, the grace period and the models' close",
  async (t) => {
    const drainMs = Number(env.get("MODELKIT_DRAIN_DELAY_MS"));
    const graceMs = Number(env.get("MODELKIT_GRACE_PERIOD_MS"));
    t.ok(drainMs > 0 && graceMs > 0, "both timings are set explicitly");
    const seconds = pod?.terminationGracePeriodSeconds;
    t.type(seconds, "number", "set explicitly, not Kubernetes' default");
    const terminationMs = Number(seconds) * 1000;
    // Each model's close is bounded by --close-timeout-ms (5 s by default): after drain and grace.
    const closeMs = Number(env.get("MODELKIT_CLOSE_TIMEOUT_MS") ?? DEFAULT_CLOSE_TIMEOUT_MS);
    t.ok(
      terminationMs >= drainMs + graceMs + closeMs,
      `${terminationMs} ms >= ${drainMs} drain + ${graceMs} grace + ${closeMs} close, else SIGKILL cuts the shutdown`,
    );
  },
);

t.test("runs as a non-root user with resources set", async (t) => {
  t.equal(pod?.securityContext?.runAsNonRoot, true);
  t.not(pod?.securityContext?.runAsUser, 0);
  t.equal(container?.securityContext?.allowPrivilegeEscalation, false);
  t.ok(container?.resources?.requests?.cpu, "cpu request");
  t.ok(container?.resources?.requests?.memory, "memory request");
  t.ok(container?.resources?.limits?.memory, "memory limit");
});

t.test("the port agrees across Dockerfile, Deployment and Service", async (t) => {
  const exposed = Number(/^EXPOSE (\d+)$/m.exec(dockerfile)?.[1]);
  t.match(dockerfile, new RegExp(`^\\s+PORT=${exposed}( \\\\)?$`, "m"), "ENV PORT equals EXPOSE");
  const port = container?.ports?.find((p) => p.containerPort === exposed);
  t.ok(port, `the container declares port ${exposed}`);
  t.equal(service?.spec?.ports?.[0]?.targetPort, port?.name, "the Service targets it");
});

t.test("the Dockerfile starts the package's CLI in exec form as the node user", async (t) => {
  const pkg = JSON.parse(read("package.json")) as { bin: Record<string, string> };
  const cli = Object.values(pkg.bin)[0]?.replace(/^\.\//, "");
  t.match(dockerfile, `CMD ["node", "${cli}", "serve"]`, "exec-form CMD runs the bin");
  t.match(dockerfile, /^USER node$/m);
  t.match(dockerfile, /npm ci --omit=dev/, "production dependencies only");
  t.match(dockerfile, /^HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "-e", "[^\n]*\/livez/m);
});

t.test("npm start and the image set glibc's malloc the same way", async (t) => {
  const pkg = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
  const mallocOf = (text: string) =>
    Object.fromEntries(
      [...text.matchAll(/\b(MALLOC_[A-Z_]+)=(\S+?)(?= |$)/gm)].map((m) => [m[1], m[2]]),
    );
  const image = mallocOf(dockerfile);
  t.same(Object.keys(image).sort(), ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"]);
  t.same(mallocOf(pkg.scripts.start ?? ""), image, "npm start's values are the image's");
});
