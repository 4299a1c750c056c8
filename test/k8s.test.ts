import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import {
  type Environment,
  LEASE_MARGIN_SECONDS,
  readRunTiming,
  readVariable,
  VARIABLES,
} from '../src/core/config.js';
import { REPO_ROOT, runCli } from './support/cli.js';

/**
 * Renders k8s/base and both overlays and checks every CronJob and the migration Job against the
 * rules the CLI relies on. Exit code 2 fails the Job at once. The Kubernetes deadline equals the
 * run deadline plus grace. A claim's lease outlives every pod that may still work on the task.
 *
 * The renderer below implements only the kustomization fields the manifests use: resources,
 * patches (strategic merge, one object per file), images and namespace. It rejects any other
 * field. When kubectl is installed, its own `kubectl kustomize` output is compared with it.
 */

const K8S_DIR = join(REPO_ROOT, 'k8s');
const RENDERINGS = ['base', 'overlays/staging', 'overlays/production'] as const;
const OVERLAYS = ['overlays/staging', 'overlays/production'] as const;

const CONFIG_MAP = 'zbox-workers-config';
const SECRET = 'zbox-workers-secrets';
const CONTAINER = 'worker';

/** Commands that are not workers and get no CronJob: the operations commands and commander's help. */
const NON_WORKER_COMMANDS = new Set(['migrate', 'status', 'doctor', 'requeue', 'demo', 'wallet', 'help']);

/** Container variables that are not part of the CLI's configuration schema. */
const NON_SCHEMA_VARIABLES = new Set(['TMPDIR']);

/**
 * Configuration each worker cannot run without, besides DATABASE_URL. Each inner list is a set
 * of alternatives, of which at least one must be set.
 */
/** Secret variables that may hold a path to a wallet file mounted from the Secret instead of the value. */
const WALLET_FILE_VARIABLES = new Set(['ZBOX_TEAM_WALLET', 'ZBOX_OPERATOR_WALLET']);

const REQUIRED_CONFIG: Record<string, string[][]> = {
  'authorized-blobbers': [['ZUS_BLOCK_WORKER', 'ZUS_SHARDERS'], ['ZBOX_OPERATOR_WALLET']],
  'create-allocation': [['ZUS_BLOCK_WORKER', 'ZUS_SHARDERS'], ['ZBOX_TEAM_WALLET'], ['ZBOX_OPERATOR_WALLET']],
  'funding-zbox': [['ZUS_BLOCK_WORKER', 'ZUS_SHARDERS'], ['ZBOX_TEAM_WALLET']],
  'expiring-allocations': [['ELASTICSEARCH_URL'], ['ZUS_BLOCK_WORKER', 'ZUS_SHARDERS']],
  'delete-wallet-transactions': [],
  'delete-openai-files': [],
  'openai-batch-request': [['ZUS_BLOCK_WORKER', 'ZUS_SHARDERS'], ['ZBOX_OPERATOR_WALLET']],
  'free-storage': [['ZUS_BLOCK_WORKER', 'ZUS_SHARDERS']],
};

// Types of the fields the checks read. Everything else passes through as unknown.

type YamlMap = Record<string, unknown>;

interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: unknown;
  data?: Record<string, string>;
}

interface SecretKeyRef {
  name: string;
  key: string;
  optional?: boolean;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: SecretKeyRef; configMapKeyRef?: unknown; fieldRef?: unknown };
}

interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type?: string };
  };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}

interface PodSpec {
  restartPolicy?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    seccompProfile?: { type?: string };
  };
  containers: Container[];
  initContainers?: Container[];
  volumes?: Array<{ name: string; emptyDir?: unknown }>;
}

interface PodFailurePolicyRule {
  action: string;
  onExitCodes?: { containerName?: string; operator: string; values: number[] };
  onPodConditions?: Array<{ type: string; status?: string }>;
}

interface JobSpec {
  backoffLimit?: number;
  activeDeadlineSeconds?: number;
  ttlSecondsAfterFinished?: number;
  podFailurePolicy?: { rules: PodFailurePolicyRule[] };
  template: { spec: PodSpec };
}

interface CronJobSpec {
  schedule: string;
  timeZone?: string;
  concurrencyPolicy?: string;
  startingDeadlineSeconds?: number;
  successfulJobsHistoryLimit?: number;
  failedJobsHistoryLimit?: number;
  jobTemplate: { spec: JobSpec };
}

interface Kustomization {
  resources?: string[];
  patches?: Array<{ path?: string }>;
  images?: Array<{ name: string; newName?: string; newTag?: string; digest?: string }>;
  namespace?: string;
}

// Kustomize-lite.

const SUPPORTED_KUSTOMIZATION_FIELDS = new Set([
  'apiVersion',
  'kind',
  'resources',
  'patches',
  'images',
  'namespace',
]);

/** Lists merged item by item on `name` by a strategic merge patch of core and batch objects. */
const LISTS_MERGED_BY_NAME = new Set(['containers', 'initContainers', 'env', 'volumes']);

function readManifests(path: string): Resource[] {
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((document) => document.toJS() as Resource | null)
    .filter((resource): resource is Resource => resource !== null);
}

/** Renders a kustomization directory the way `kubectl kustomize` does, for the supported fields. */
function renderKustomization(dir: string): Resource[] {
  const file = join(dir, 'kustomization.yaml');
  const kustomization = parse(readFileSync(file, 'utf8')) as Kustomization;
  for (const field of Object.keys(kustomization)) {
    if (!SUPPORTED_KUSTOMIZATION_FIELDS.has(field)) {
      throw new Error(
        `${relative(REPO_ROOT, file)}: field "${field}" is not supported by the renderer in this test (use only ${[...SUPPORTED_KUSTOMIZATION_FIELDS].join(', ')}, or extend renderKustomization)`,
      );
    }
  }

  const resources: Resource[] = [];
  for (const entry of kustomization.resources ?? []) {
    const path = resolve(dir, entry);
    resources.push(...(statSync(path).isDirectory() ? renderKustomization(path) : readManifests(path)));
  }

  for (const patch of kustomization.patches ?? []) {
    if (patch.path === undefined || Object.keys(patch).length !== 1) {
      throw new Error(
        `${relative(REPO_ROOT, file)}: patch ${JSON.stringify(patch)} is not supported by the renderer in this test (give each patch only a "path" to a strategic merge patch)`,
      );
    }
    for (const document of readManifests(resolve(dir, patch.path))) {
      applyStrategicMergePatch(resources, document, patch.path);
    }
  }

  for (const image of kustomization.images ?? []) {
    for (const resource of resources) {
      for (const container of containersOf(resource)) {
        setImage(container, image);
      }
    }
  }

  if (kustomization.namespace !== undefined) {
    for (const resource of resources) {
      resource.metadata.namespace = kustomization.namespace;
    }
  }
  return resources;
}

function applyStrategicMergePatch(resources: Resource[], patch: Resource, source: string): void {
  const index = resources.findIndex(
    (resource) =>
      resource.apiVersion === patch.apiVersion &&
      resource.kind === patch.kind &&
      resource.metadata.name === patch.metadata.name,
  );
  if (index === -1) {
    throw new Error(`patch ${source}: no ${patch.kind} named ${patch.metadata.name} to patch`);
  }
  resources[index] = mergeValue(resources[index], patch, '') as Resource;
}

function isMap(value: unknown): value is YamlMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Merges a strategic merge patch into a value: maps key by key, a null deletes the key, the
 * lists in LISTS_MERGED_BY_NAME item by item, and any other value replaces the original.
 * Directives such as `$patch` and new items in a merged list are rejected, because kustomize
 * orders and applies them by rules this renderer does not reproduce.
 */
function mergeValue(original: unknown, patch: unknown, key: string): unknown {
  if (isMap(original) && isMap(patch)) {
    const merged: YamlMap = { ...original };
    for (const [field, value] of Object.entries(patch)) {
      if (field.startsWith('$')) {
        throw new Error(
          `patch directive ${field} is not supported by the renderer in this test (write the patched values out instead)`,
        );
      }
      if (value === null) {
        delete merged[field];
      } else {
        merged[field] = mergeValue(original[field], value, field);
      }
    }
    return merged;
  }
  if (LISTS_MERGED_BY_NAME.has(key) && Array.isArray(original) && Array.isArray(patch)) {
    const merged = [...original];
    for (const item of patch) {
      const position = merged.findIndex(
        (candidate) => isMap(candidate) && isMap(item) && candidate.name === item.name,
      );
      if (position === -1) {
        throw new Error(
          `patch adds an item to "${key}", which the renderer in this test does not support (add it in the base, or extend mergeValue)`,
        );
      }
      merged[position] = mergeValue(merged[position], item, '');
    }
    return merged;
  }
  return structuredClone(patch);
}

function setImage(container: Container, image: NonNullable<Kustomization['images']>[number]): void {
  if (container.image === undefined) {
    return;
  }
  const match = /^(?<name>[^@]+?)(?::(?<tag>[^:/@]+))?(?:@(?<digest>.+))?$/.exec(container.image);
  if (match?.groups?.name !== image.name) {
    return;
  }
  const name = image.newName ?? image.name;
  if (image.digest !== undefined) {
    container.image = `${name}@${image.digest}`;
  } else if (image.newTag !== undefined) {
    container.image = `${name}:${image.newTag}`;
  } else {
    container.image = container.image.replace(image.name, name);
  }
}

// Accessors.

function podSpecOf(resource: Resource): PodSpec | undefined {
  if (resource.kind === 'CronJob') {
    return (resource.spec as CronJobSpec).jobTemplate.spec.template.spec;
  }
  if (resource.kind === 'Job') {
    return (resource.spec as JobSpec).template.spec;
  }
  return undefined;
}

function containersOf(resource: Resource): Container[] {
  const pod = podSpecOf(resource);
  return pod === undefined ? [] : [...pod.containers, ...(pod.initContainers ?? [])];
}

/** A CronJob or Job with the parts the checks read. */
interface Workload {
  label: string;
  resource: Resource;
  cronJob: CronJobSpec | undefined;
  job: JobSpec;
  pod: PodSpec;
  container: Container;
}

function workloadsOf(resources: Resource[]): Workload[] {
  return resources.flatMap((resource) => {
    const pod = podSpecOf(resource);
    if (pod === undefined) {
      return [];
    }
    const cronJob = resource.kind === 'CronJob' ? (resource.spec as CronJobSpec) : undefined;
    const job = cronJob?.jobTemplate.spec ?? (resource.spec as JobSpec);
    const container = pod.containers.find((candidate) => candidate.name === CONTAINER);
    assert.ok(container, `${resource.kind} ${resource.metadata.name}: no container named "${CONTAINER}"`);
    return [{ label: `${resource.kind} ${resource.metadata.name}`, resource, cronJob, job, pod, container }];
  });
}

function configMapData(resources: Resource[], name: string): Record<string, string> | undefined {
  return resources.find((resource) => resource.kind === 'ConfigMap' && resource.metadata.name === name)?.data;
}

/** Environment of a container as the kubelet builds it: envFrom first, then env, which wins. */
function plainEnvironment(container: Container, resources: Resource[]): Environment {
  const environment: Environment = {};
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef !== undefined) {
      Object.assign(environment, configMapData(resources, source.configMapRef.name) ?? {});
    }
  }
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) {
      environment[variable.name] = variable.value;
    } else {
      delete environment[variable.name];
    }
  }
  return environment;
}

function secretKeyRef(container: Container, name: string): SecretKeyRef | undefined {
  return container.env?.find((variable) => variable.name === name)?.valueFrom?.secretKeyRef;
}

function workerOf(workload: Workload): string {
  return workload.container.args?.[0] ?? '';
}

/**
 * Period of a cron schedule in seconds, for the forms the manifests use: "M * * * *",
 * "*\/N * * * *", "M *\/N * * *" and "M H * * *". Raises for any other form.
 */
function schedulePeriodSeconds(schedule: string): number {
  const fields = schedule.trim().split(/\s+/);
  const [minute, hour, ...rest] = fields;
  const supported = fields.length === 5 && rest.every((field) => field === '*');
  const step = (field: string | undefined) => /^\*\/(\d+)$/.exec(field ?? '')?.[1];
  const fixed = (field: string | undefined, max: number) => /^\d+$/.test(field ?? '') && Number(field) <= max;
  const minuteStep = step(minute);
  const hourStep = step(hour);
  if (supported && minuteStep !== undefined && hour === '*' && 60 % Number(minuteStep) === 0) {
    return Number(minuteStep) * 60;
  }
  if (supported && fixed(minute, 59) && hour === '*') {
    return 3600;
  }
  if (supported && fixed(minute, 59) && hourStep !== undefined && 24 % Number(hourStep) === 0) {
    return Number(hourStep) * 3600;
  }
  if (supported && fixed(minute, 59) && fixed(hour, 23)) {
    return 86_400;
  }
  throw new Error(`schedule "${schedule}" has a form this test cannot compute a period for`);
}

// Invariants. Each is one test per rendering, so a failure names the rule and the workload.

interface Invariant {
  name: string;
  /** Whether the rule applies to the migration Job too, or to CronJobs only. */
  scope: 'all' | 'cronjobs';
  check: (workload: Workload, resources: Resource[]) => void;
}

function cronJobOf(workload: Workload): CronJobSpec {
  assert.ok(workload.cronJob, `${workload.label}: not a CronJob`);
  return workload.cronJob;
}

/**
 * Reads deadline, grace and lease of a CronJob's container without the CLI's cross-check, so
 * each timing rule below fails on its own. An unset lease gets the CLI's default of
 * deadline + grace + 60 s.
 */
function runTimingOf(workload: Workload, resources: Resource[]) {
  const environment = plainEnvironment(workload.container, resources);
  const deadlineSeconds = readVariable(environment, 'ZBOX_RUN_DEADLINE_SECONDS') ?? Number.NaN;
  const graceSeconds = readVariable(environment, 'ZBOX_GRACE_SECONDS') ?? Number.NaN;
  const leaseSeconds = readVariable(environment, 'ZBOX_LEASE_SECONDS') ?? deadlineSeconds + graceSeconds + 60;
  return { deadlineSeconds, graceSeconds, leaseSeconds };
}

const INVARIANTS: Invariant[] = [
  {
    name: 'uses batch/v1',
    scope: 'all',
    check: (workload) => assert.equal(workload.resource.apiVersion, 'batch/v1', workload.label),
  },
  {
    name: 'is named after its worker',
    scope: 'cronjobs',
    check: (workload) =>
      assert.equal(workload.resource.metadata.name, `zbox-workers-${workerOf(workload)}`, workload.label),
  },
  {
    name: 'schedules in Etc/UTC',
    scope: 'cronjobs',
    check: (workload) => {
      const cronJob = cronJobOf(workload);
      assert.equal(cronJob.timeZone, 'Etc/UTC', `${workload.label}: timeZone`);
      assert.doesNotMatch(cronJob.schedule, /TZ=/, `${workload.label}: schedule must not carry a time zone`);
    },
  },
  {
    name: 'forbids concurrent runs',
    scope: 'cronjobs',
    check: (workload) => assert.equal(cronJobOf(workload).concurrencyPolicy, 'Forbid', workload.label),
  },
  {
    name: 'sets a starting deadline within the period',
    scope: 'cronjobs',
    check: (workload) => {
      const cronJob = cronJobOf(workload);
      const deadline = cronJob.startingDeadlineSeconds;
      assert.ok(Number.isInteger(deadline), `${workload.label}: startingDeadlineSeconds missing`);
      // The Kubernetes CronJob docs warn that a deadline below 10 s may never start a Job, because
      // the controller checks schedules every 10 s.
      assert.ok((deadline ?? 0) >= 10, `${workload.label}: startingDeadlineSeconds ${deadline} is below 10`);
      assert.ok(
        (deadline ?? 0) < schedulePeriodSeconds(cronJob.schedule),
        `${workload.label}: startingDeadlineSeconds ${deadline} is not shorter than the schedule period`,
      );
    },
  },
  {
    name: 'limits job history',
    scope: 'cronjobs',
    check: (workload) => {
      const cronJob = cronJobOf(workload);
      assert.ok(
        Number.isInteger(cronJob.successfulJobsHistoryLimit),
        `${workload.label}: successfulJobsHistoryLimit`,
      );
      assert.ok(
        (cronJob.failedJobsHistoryLimit ?? 0) >= 1,
        `${workload.label}: failedJobsHistoryLimit below 1`,
      );
    },
  },
  {
    name: 'does not retry pods',
    scope: 'cronjobs',
    check: (workload) => assert.equal(workload.job.backoffLimit, 0, `${workload.label}: backoffLimit`),
  },
  {
    name: 'sets ttlSecondsAfterFinished',
    scope: 'all',
    check: (workload) =>
      assert.ok(
        (workload.job.ttlSecondsAfterFinished ?? 0) > 0,
        `${workload.label}: ttlSecondsAfterFinished`,
      ),
  },
  {
    name: 'sets activeDeadlineSeconds',
    scope: 'all',
    check: (workload) =>
      assert.ok((workload.job.activeDeadlineSeconds ?? 0) > 0, `${workload.label}: activeDeadlineSeconds`),
  },
  {
    name: 'never restarts a container',
    scope: 'all',
    check: (workload) =>
      assert.equal(workload.pod.restartPolicy, 'Never', `${workload.label}: restartPolicy`),
  },
  {
    name: 'fails the job on exit code 2',
    scope: 'all',
    check: (workload) => {
      const rule = workload.job.podFailurePolicy?.rules.find(
        (candidate) => candidate.onExitCodes !== undefined,
      );
      assert.equal(rule?.action, 'FailJob', `${workload.label}: exit code rule action`);
      assert.equal(rule?.onExitCodes?.operator, 'In', `${workload.label}: exit code rule operator`);
      assert.deepEqual(rule?.onExitCodes?.values, [2], `${workload.label}: exit code rule values`);
      assert.equal(
        rule?.onExitCodes?.containerName,
        CONTAINER,
        `${workload.label}: exit code rule container`,
      );
    },
  },
  {
    name: 'ignores disruptions',
    scope: 'all',
    check: (workload) => {
      const rule = workload.job.podFailurePolicy?.rules.find((candidate) =>
        candidate.onPodConditions?.some((condition) => condition.type === 'DisruptionTarget'),
      );
      assert.equal(rule?.action, 'Ignore', `${workload.label}: DisruptionTarget rule`);
    },
  },
  {
    name: 'requests resources and limits memory',
    scope: 'all',
    check: (workload) => {
      const resources = workload.container.resources;
      assert.ok(resources?.requests?.cpu, `${workload.label}: CPU request`);
      assert.ok(resources?.requests?.memory, `${workload.label}: memory request`);
      assert.ok(resources?.limits?.memory, `${workload.label}: memory limit`);
    },
  },
  {
    name: 'runs as a numeric non-root user',
    scope: 'all',
    check: (workload) => {
      const pod = workload.pod.securityContext;
      const container = workload.container.securityContext;
      assert.equal(container?.runAsNonRoot ?? pod?.runAsNonRoot, true, `${workload.label}: runAsNonRoot`);
      const user = container?.runAsUser ?? pod?.runAsUser;
      assert.ok(Number.isInteger(user), `${workload.label}: runAsUser ${user} is not a number`);
      assert.ok((user ?? 0) > 0, `${workload.label}: runAsUser ${user} is root`);
    },
  },
  {
    name: 'has a read-only root filesystem',
    scope: 'all',
    check: (workload) =>
      assert.equal(workload.container.securityContext?.readOnlyRootFilesystem, true, workload.label),
  },
  {
    name: 'forbids privilege escalation',
    scope: 'all',
    check: (workload) =>
      assert.equal(workload.container.securityContext?.allowPrivilegeEscalation, false, workload.label),
  },
  {
    name: 'drops all capabilities',
    scope: 'all',
    check: (workload) => {
      const capabilities = workload.container.securityContext?.capabilities;
      assert.deepEqual(capabilities?.drop, ['ALL'], `${workload.label}: capabilities.drop`);
      assert.equal(capabilities?.add, undefined, `${workload.label}: capabilities.add`);
    },
  },
  {
    name: 'uses the RuntimeDefault seccomp profile',
    scope: 'all',
    check: (workload) => {
      const profile =
        workload.container.securityContext?.seccompProfile ?? workload.pod.securityContext?.seccompProfile;
      assert.equal(profile?.type, 'RuntimeDefault', workload.label);
    },
  },
  {
    name: 'mounts no service account token',
    scope: 'all',
    check: (workload) => assert.equal(workload.pod.automountServiceAccountToken, false, workload.label),
  },
  {
    name: 'writes temporary files to an emptyDir',
    scope: 'all',
    check: (workload, resources) => {
      const mount = workload.container.volumeMounts?.find((candidate) => candidate.mountPath === '/tmp');
      assert.ok(mount, `${workload.label}: nothing mounted at /tmp`);
      const volume = workload.pod.volumes?.find((candidate) => candidate.name === mount.name);
      assert.ok(volume?.emptyDir !== undefined, `${workload.label}: /tmp is not an emptyDir`);
      assert.equal(
        plainEnvironment(workload.container, resources).TMPDIR,
        '/tmp',
        `${workload.label}: TMPDIR`,
      );
    },
  },
  {
    name: 'runs the CLI with --json',
    scope: 'all',
    check: (workload) => {
      assert.equal(
        workload.container.command,
        undefined,
        `${workload.label}: command overrides the entrypoint`,
      );
      assert.equal(workload.container.args?.length, 2, `${workload.label}: args ${workload.container.args}`);
      assert.equal(workload.container.args?.[1], '--json', `${workload.label}: second arg`);
    },
  },
  {
    name: 'reads the config map',
    scope: 'all',
    check: (workload, resources) => {
      const names = (workload.container.envFrom ?? []).map((source) => source.configMapRef?.name);
      assert.ok(names.includes(CONFIG_MAP), `${workload.label}: no envFrom of ${CONFIG_MAP}`);
      for (const name of names.filter((candidate) => candidate !== undefined)) {
        assert.ok(
          configMapData(resources, name),
          `${workload.label}: ConfigMap ${name} is not in the rendering`,
        );
      }
    },
  },
  {
    name: 'reads DATABASE_URL from the secret',
    scope: 'all',
    check: (workload) => {
      const reference = secretKeyRef(workload.container, 'DATABASE_URL');
      assert.equal(reference?.name, SECRET, `${workload.label}: secret name`);
      assert.equal(reference?.key, 'DATABASE_URL', `${workload.label}: secret key`);
      // Optional, so that a missing secret makes the CLI exit 2 instead of blocking the pod start.
      assert.equal(reference?.optional, true, `${workload.label}: DATABASE_URL must be optional`);
    },
  },
  {
    name: 'reads ELASTICSEARCH_API_KEY as optional',
    scope: 'all',
    check: (workload) => {
      const variable = workload.container.env?.find(
        (candidate) => candidate.name === 'ELASTICSEARCH_API_KEY',
      );
      if (variable === undefined) {
        return;
      }
      assert.equal(variable.valueFrom?.secretKeyRef?.name, SECRET, `${workload.label}: secret name`);
      assert.equal(variable.valueFrom?.secretKeyRef?.optional, true, `${workload.label}: optional`);
    },
  },
  {
    name: 'keeps secret values out of plain env',
    scope: 'all',
    check: (workload, resources) => {
      const environment = plainEnvironment(workload.container, resources);
      for (const [name, spec] of Object.entries(VARIABLES)) {
        if (!('secret' in spec && spec.secret)) {
          continue;
        }
        const value = environment[name];
        if (value !== undefined && WALLET_FILE_VARIABLES.has(name)) {
          // A wallet variable may name a file of a Secret volume mounted read-only.
          const mount = workload.container.volumeMounts?.find((item) =>
            value.startsWith(`${item.mountPath}/`),
          );
          const volume = workload.pod.volumes?.find((item) => item.name === mount?.name) as
            | { secret?: { secretName?: string } }
            | undefined;
          assert.equal(mount?.readOnly, true, `${workload.label}: ${name} must point into a read-only mount`);
          assert.equal(
            volume?.secret?.secretName,
            SECRET,
            `${workload.label}: ${name} must point into the Secret`,
          );
          continue;
        }
        assert.equal(value, undefined, `${workload.label}: ${name} has a plain value`);
      }
    },
  },
  {
    name: 'sets only known variables',
    scope: 'all',
    check: (workload) => {
      for (const variable of workload.container.env ?? []) {
        assert.ok(
          variable.name in VARIABLES || NON_SCHEMA_VARIABLES.has(variable.name),
          `${workload.label}: ${variable.name} is not a variable of src/core/config.ts`,
        );
      }
    },
  },
  {
    name: 'sets deadline and grace explicitly',
    scope: 'cronjobs',
    check: (workload, resources) => {
      const environment = plainEnvironment(workload.container, resources);
      assert.ok(environment.ZBOX_RUN_DEADLINE_SECONDS, `${workload.label}: ZBOX_RUN_DEADLINE_SECONDS unset`);
      assert.ok(environment.ZBOX_GRACE_SECONDS, `${workload.label}: ZBOX_GRACE_SECONDS unset`);
    },
  },
  {
    name: 'passes the CLI run timing check',
    scope: 'cronjobs',
    check: (workload, resources) => {
      assert.doesNotThrow(
        () => readRunTiming(plainEnvironment(workload.container, resources)),
        workload.label,
      );
    },
  },
  {
    name: 'grace equals terminationGracePeriodSeconds',
    scope: 'cronjobs',
    check: (workload, resources) => {
      const timing = runTimingOf(workload, resources);
      assert.equal(workload.pod.terminationGracePeriodSeconds, timing.graceSeconds, workload.label);
    },
  },
  {
    name: 'active deadline is deadline plus grace',
    scope: 'cronjobs',
    check: (workload, resources) => {
      const timing = runTimingOf(workload, resources);
      assert.equal(
        workload.job.activeDeadlineSeconds,
        timing.deadlineSeconds + timing.graceSeconds,
        workload.label,
      );
    },
  },
  {
    name: 'active deadline is within the period',
    scope: 'cronjobs',
    check: (workload) => {
      const period = schedulePeriodSeconds(cronJobOf(workload).schedule);
      assert.ok(
        (workload.job.activeDeadlineSeconds ?? Number.POSITIVE_INFINITY) < period,
        `${workload.label}: activeDeadlineSeconds ${workload.job.activeDeadlineSeconds} >= period ${period}`,
      );
    },
  },
  {
    name: 'lease exceeds active deadline plus 30 s',
    scope: 'cronjobs',
    check: (workload, resources) => {
      const timing = runTimingOf(workload, resources);
      const minimum = (workload.job.activeDeadlineSeconds ?? Number.POSITIVE_INFINITY) + LEASE_MARGIN_SECONDS;
      assert.ok(
        timing.leaseSeconds >= minimum,
        `${workload.label}: lease ${timing.leaseSeconds} < ${minimum}`,
      );
    },
  },
  {
    // Kubernetes sends SIGTERM at activeDeadlineSeconds and SIGKILL only after the termination
    // grace period, so a pod can live that long and its leases must last as long.
    name: 'lease outlives a killed pod',
    scope: 'cronjobs',
    check: (workload, resources) => {
      const timing = runTimingOf(workload, resources);
      const podEnd =
        (workload.job.activeDeadlineSeconds ?? Number.POSITIVE_INFINITY) +
        (workload.pod.terminationGracePeriodSeconds ?? 30);
      assert.ok(timing.leaseSeconds >= podEnd, `${workload.label}: lease ${timing.leaseSeconds} < ${podEnd}`);
    },
  },
];

// Renderings, the CLI's command list and kubectl, read once.

const rendered = new Map(RENDERINGS.map((name) => [name, renderKustomization(join(K8S_DIR, name))]));

function renderingOf(name: (typeof RENDERINGS)[number]): Resource[] {
  const resources = rendered.get(name);
  assert.ok(resources, `${name} was not rendered`);
  return resources;
}

assert.ok(
  existsSync(join(REPO_ROOT, 'dist', 'cli.js')),
  'dist/cli.js is missing: run `npm run build` before this test',
);
const help = await runCli(['--help'], {});
const commandsSection = /\nCommands:\n([\s\S]*?)\n\n/.exec(help.stdout)?.[1] ?? '';
const COMMANDS = [...commandsSection.matchAll(/^ {2}([a-z][a-z0-9-]*)/gm)].map((match) => match[1] ?? '');
const WORKER_COMMANDS = COMMANDS.filter((command) => !NON_WORKER_COMMANDS.has(command));

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const KUBECTL_MISSING = kubectl.error !== undefined ? 'kubectl is not installed' : false;

test('help lists the worker commands', () => {
  assert.equal(help.code, 0, help.stderr);
  assert.ok(WORKER_COMMANDS.length > 0, `no worker commands found in:\n${help.stdout}`);
  assert.ok(COMMANDS.includes('migrate'), 'migrate is not listed');
});

for (const name of RENDERINGS) {
  describe(`${name} rendering`, () => {
    const resources = renderingOf(name);
    const workloads = workloadsOf(resources);
    const cronJobs = workloads.filter((workload) => workload.cronJob !== undefined);

    test('has one CronJob per worker', () => {
      for (const worker of WORKER_COMMANDS) {
        const matching = cronJobs.filter((workload) => workerOf(workload) === worker);
        assert.equal(matching.length, 1, `CronJobs running ${worker}`);
      }
    });

    test('runs only real worker commands', () => {
      for (const workload of cronJobs) {
        assert.ok(
          WORKER_COMMANDS.includes(workerOf(workload)),
          `${workload.label}: first arg ${workerOf(workload)}`,
        );
      }
    });

    test('has the migration Job', () => {
      const jobs = workloads.filter((workload) => workload.resource.kind === 'Job');
      assert.deepEqual(
        jobs.map((workload) => workload.resource.metadata.name),
        ['zbox-workers-migrate'],
      );
      assert.deepEqual(jobs[0]?.container.args, ['migrate', '--json']);
    });

    test('contains no Secret', () => {
      assert.deepEqual(
        resources.filter((resource) => resource.kind === 'Secret').map((resource) => resource.metadata.name),
        [],
      );
    });

    test('config map has valid known variables', () => {
      const data = configMapData(resources, CONFIG_MAP);
      assert.ok(data, `${CONFIG_MAP} is not in the rendering`);
      for (const [variable, value] of Object.entries(data)) {
        assert.ok(variable in VARIABLES, `${variable} is not a variable of src/core/config.ts`);
        const spec = VARIABLES[variable as keyof typeof VARIABLES];
        assert.ok(!('secret' in spec && spec.secret), `${variable} is secret and belongs in ${SECRET}`);
        assert.doesNotThrow(
          () => readVariable({ [variable]: value }, variable as keyof typeof VARIABLES),
          variable,
        );
      }
    });

    for (const invariant of INVARIANTS) {
      test(invariant.name, () => {
        const applicable = invariant.scope === 'all' ? workloads : cronJobs;
        assert.ok(applicable.length > 0, 'no workloads rendered');
        for (const workload of applicable) {
          invariant.check(workload, resources);
        }
      });
    }

    test('matches kubectl kustomize', { skip: KUBECTL_MISSING }, () => {
      const result = spawnSync('kubectl', ['kustomize', join(K8S_DIR, name)], { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
      const byKey = (list: Resource[]) =>
        new Map(list.map((resource) => [`${resource.kind}/${resource.metadata.name}`, resource]));
      const expected = byKey(parseAllDocuments(result.stdout).map((document) => document.toJS() as Resource));
      const actual = byKey(resources);
      assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
      for (const [key, resource] of expected) {
        assert.deepEqual(actual.get(key), resource, key);
      }
    });
  });
}

for (const name of OVERLAYS) {
  describe(`${name} overlay`, () => {
    const resources = renderingOf(name);
    const workloads = workloadsOf(resources);

    test('sets a namespace on every object', () => {
      for (const resource of resources) {
        assert.ok(resource.metadata.namespace, `${resource.kind} ${resource.metadata.name}`);
      }
    });

    test('pins a registry image tag', () => {
      for (const workload of workloads) {
        const image = workload.container.image ?? '';
        assert.match(
          image,
          /^[^/]+\/.+(:[\w.-]+|@sha256:[0-9a-f]{64})$/,
          `${workload.label}: image ${image}`,
        );
        assert.doesNotMatch(image, /:latest$/, `${workload.label}: image ${image}`);
      }
    });

    test("sets each worker's required config", () => {
      for (const workload of workloads.filter((candidate) => candidate.cronJob !== undefined)) {
        const worker = workerOf(workload);
        const required = REQUIRED_CONFIG[worker];
        assert.ok(required, `${worker}: add its required variables to REQUIRED_CONFIG in this test`);
        const environment = plainEnvironment(workload.container, resources);
        for (const alternatives of required) {
          assert.ok(
            alternatives.some((variable) => environment[variable]),
            `${workload.label}: none of ${alternatives.join(', ')} is set`,
          );
        }
      }
    });
  });
}

test('overlays use different namespaces', () => {
  const namespaces = OVERLAYS.map((name) => renderingOf(name)[0]?.metadata.namespace);
  assert.equal(new Set(namespaces).size, OVERLAYS.length, `namespaces ${namespaces.join(', ')}`);
});

test("CLI accepts every container's args", async () => {
  const argsLists = new Set(
    RENDERINGS.flatMap((name) =>
      workloadsOf(renderingOf(name)).map((workload) => workload.container.args ?? []),
    ).map((args) => JSON.stringify(args)),
  );
  for (const text of argsLists) {
    const args = JSON.parse(text) as string[];
    const result = await runCli([...args, '--help'], {});
    assert.equal(result.code, 0, `${args.join(' ')} --help: ${result.stderr}`);
  }
});
