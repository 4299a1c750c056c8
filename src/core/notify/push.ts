import { readVariable, requireVariable } from '../config.js';
import type { RunContext } from '../engine/context.js';
import { ConfigError } from '../errors.js';

/** The push adapter's interface, as the workers use it (implemented in fcm.ts with firebase-admin). */
export interface PushResult {
  token: string;
  outcome: 'sent' | 'prune' | 'retry' | 'failed';
  code?: string;
  reason?: string;
}

export interface PushSender {
  send(
    tokens: string[],
    message: { title: string; body: string; data?: Record<string, string> },
  ): Promise<PushResult[]>;
  close(): Promise<void>;
}

/**
 * Builds the FCM sender from the environment: the service-account JSON in
 * ZBOX_FIREBASE_CREDENTIALS and its project (or ZBOX_FIREBASE_PROJECT_ID). firebase-admin is
 * loaded only here, when a worker first has a device to notify.
 */
export async function openPushSender(ctx: RunContext): Promise<PushSender> {
  const credentialJson = requireVariable(ctx.env, 'ZBOX_FIREBASE_CREDENTIALS');
  const projectId = readVariable(ctx.env, 'ZBOX_FIREBASE_PROJECT_ID') ?? projectOf(credentialJson);
  const { createPushSender } = await import('./fcm.js');
  return createPushSender({
    credentialJson,
    projectId,
    concurrency: requireVariable(ctx.env, 'ZBOX_PUSH_CONCURRENCY'),
    logger: ctx.logger,
  });
}

function projectOf(credentialJson: string): string {
  try {
    const projectId = (JSON.parse(credentialJson) as { project_id?: unknown }).project_id;
    if (typeof projectId === 'string' && projectId !== '') {
      return projectId;
    }
  } catch {
    // Reported below without the content, which is a secret.
  }
  throw new ConfigError(
    'ZBOX_FIREBASE_PROJECT_ID: missing, and ZBOX_FIREBASE_CREDENTIALS has no project_id (set the project id, or use the service-account JSON the Firebase console issues)',
  );
}
