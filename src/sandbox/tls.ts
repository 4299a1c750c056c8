import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** A throw-away TLS identity of a loopback fake. */
export interface SelfSignedCertificate {
  /** PEM of the private key, for the server only. */
  key: string;
  /** PEM of the certificate. It is its own CA: a client trusts it by passing it as `ca`, or a child process through NODE_EXTRA_CA_CERTS. */
  certificate: string;
}

/** Host name the certificate is issued to, besides the address 127.0.0.1. */
export const CERTIFICATE_HOST = 'localhost';

/**
 * Generates an EC key and a self-signed certificate for `localhost` and 127.0.0.1, valid for one
 * day, with the openssl CLI. The files live in a private temporary folder that is removed before
 * this returns.
 */
export async function generateSelfSignedCertificate(): Promise<SelfSignedCertificate> {
  const folder = await mkdtemp(join(tmpdir(), 'zbox-fake-tls-'));
  const keyPath = join(folder, 'key.pem');
  const certificatePath = join(folder, 'certificate.pem');
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certificatePath,
      '-days',
      '1',
      '-subj',
      `/CN=${CERTIFICATE_HOST}`,
      '-addext',
      `subjectAltName=DNS:${CERTIFICATE_HOST},IP:127.0.0.1`,
    ]);
    return { key: await readFile(keyPath, 'utf8'), certificate: await readFile(certificatePath, 'utf8') };
  } catch (error) {
    throw new Error(
      `generating a TLS certificate for a loopback fake with the openssl CLI failed (${String(error)}). Install openssl and make sure it is on PATH`,
      { cause: error },
    );
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}
