import { tmpdir } from 'node:os';
import { type Environment, readVariable, requireVariable } from '../config.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../output/logger.js';
import type { S3Storage } from '../storage/s3.js';
import { createOpenAIClient, type OpenAIClient } from './client.js';

/** Builds the OpenAI client from OPENAI_API_KEY, OPENAI_BASE_URL and ZBOX_OPENAI_TIMEOUT_MS. */
export async function connectOpenAI(env: Environment, logger: Logger): Promise<OpenAIClient> {
  return createOpenAIClient({
    apiKey: requireVariable(env, 'OPENAI_API_KEY'),
    baseURL: requireVariable(env, 'OPENAI_BASE_URL'),
    timeoutMs: requireVariable(env, 'ZBOX_OPENAI_TIMEOUT_MS'),
    logger,
  });
}

/**
 * Builds the S3 adapter for batch images. Static keys are used when both are set; otherwise the
 * AWS SDK's default credential chain applies (an IAM role of the pod).
 */
export async function connectS3(env: Environment, logger: Logger): Promise<S3Storage> {
  const accessKeyId = readVariable(env, 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = readVariable(env, 'AWS_SECRET_ACCESS_KEY');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new ConfigError(
      'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both, or neither to use the default chain',
    );
  }
  const endpoint = readVariable(env, 'ZBOX_S3_ENDPOINT');
  const { createS3 } = await import('../storage/s3.js');
  return createS3({
    bucket: requireVariable(env, 'ZBOX_S3_BUCKET'),
    region: requireVariable(env, 'ZBOX_S3_REGION'),
    ...(endpoint === undefined ? {} : { endpoint }),
    forcePathStyle: requireVariable(env, 'ZBOX_S3_FORCE_PATH_STYLE'),
    ...(accessKeyId === undefined || secretAccessKey === undefined
      ? {}
      : { credentials: { accessKeyId, secretAccessKey } }),
    logger,
  });
}

/** Folder for temporary files: ZBOX_TMP_DIR, else the system's. */
export function temporaryFolder(env: Environment): string {
  return readVariable(env, 'ZBOX_TMP_DIR') ?? tmpdir();
}
