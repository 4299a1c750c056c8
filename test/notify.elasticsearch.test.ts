import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Client, errors } from '@elastic/elasticsearch';
import { ConfigError, TransientError } from '../src/core/errors.js';
import {
  createDocuments,
  createElasticsearchClient,
  type ElasticsearchClient,
} from '../src/core/notify/elasticsearch.js';
import { type ElasticsearchFake, startElasticsearchFake } from '../src/sandbox/elasticsearch.js';

const INDEX = 'allocation-expiry-notifications';

function doc(id: string, text = `notice ${id}`) {
  return { id, document: { allocation_id: id, text } };
}

describe('createDocuments with the real client', () => {
  let fake: ElasticsearchFake;
  let client: ElasticsearchClient;

  before(async () => {
    fake = await startElasticsearchFake();
    client = createElasticsearchClient({ node: fake.url, apiKey: 'dGVzdDprZXk=', requestTimeoutMs: 2_000 });
  });
  afterEach(() => {
    fake.failNextRequests(0);
  });
  after(async () => {
    await client.close();
    await fake.close();
  });

  test('creates new documents in one bulk request', async () => {
    const before = fake.requestCount;

    const outcomes = await createDocuments(client, INDEX, [doc('n-1'), doc('n-2')]);

    assert.deepEqual(Object.fromEntries(outcomes), {
      'n-1': { outcome: 'created' },
      'n-2': { outcome: 'created' },
    });
    assert.equal(fake.requestCount, before + 1);
    const request = fake.requests.at(-1);
    assert.equal(request?.method, 'POST');
    assert.equal(request?.path, '/_bulk');
    assert.equal(request?.contentType, 'application/vnd.elasticsearch+x-ndjson; compatible-with=9');
    assert.equal(request?.authScheme, 'ApiKey');
    assert.deepEqual(fake.documents(INDEX).get('n-1'), { allocation_id: 'n-1', text: 'notice n-1' });
  });

  test('reports a duplicate as exists without overwriting it', async () => {
    await createDocuments(client, INDEX, [doc('d-1', 'first')]);

    const outcomes = await createDocuments(client, INDEX, [doc('d-1', 'second')]);

    assert.deepEqual(outcomes.get('d-1'), { outcome: 'exists' });
    assert.equal(fake.documents(INDEX).get('d-1')?.text, 'first');
  });

  test('classifies mixed item errors in one bulk', async () => {
    await createDocuments(client, INDEX, [doc('m-exists')]);
    fake.failNextItem('m-busy', { status: 429 });
    fake.failNextItem('m-bad', {
      status: 400,
      type: 'document_parsing_exception',
      reason: 'failed to parse field [expires_at]',
    });
    const before = fake.requestCount;

    const outcomes = await createDocuments(client, INDEX, [
      doc('m-exists'),
      doc('m-busy'),
      doc('m-bad'),
      doc('m-new'),
    ]);

    assert.equal(fake.requestCount, before + 1);
    assert.deepEqual(outcomes.get('m-exists'), { outcome: 'exists' });
    assert.equal(outcomes.get('m-busy')?.outcome, 'retry');
    assert.match(outcomes.get('m-busy')?.reason ?? '', /HTTP 429 es_rejected_execution_exception/);
    assert.deepEqual(outcomes.get('m-bad'), {
      outcome: 'rejected',
      reason: 'HTTP 400 document_parsing_exception: failed to parse field [expires_at]',
    });
    assert.deepEqual(outcomes.get('m-new'), { outcome: 'created' });
    assert.equal(fake.documents(INDEX).has('m-busy'), false);
  });

  test('retries a rejected item on the next call', async () => {
    fake.failNextItem('r-1', { status: 503, reason: 'primary shard is not active' });

    const first = await createDocuments(client, INDEX, [doc('r-1')]);
    const second = await createDocuments(client, INDEX, [doc('r-1')]);

    assert.equal(first.get('r-1')?.outcome, 'retry');
    assert.deepEqual(second.get('r-1'), { outcome: 'created' });
  });

  test('passes the refresh option', async () => {
    await createDocuments(client, INDEX, [doc('f-1')], { refresh: 'wait_for' });

    assert.deepEqual(fake.requests.at(-1)?.query, { refresh: 'wait_for' });
  });

  test('throws TransientError when the whole request keeps failing', async () => {
    // The transport retries 503 three times by default, so four failures exhaust it.
    fake.failNextRequests(4, 503);
    const before = fake.requestCount;

    await assert.rejects(createDocuments(client, INDEX, [doc('w-1')]), (error: unknown) => {
      assert.ok(error instanceof TransientError);
      assert.equal(error.dependency, 'elasticsearch');
      assert.match(error.message, /HTTP 503 unavailable_shards_exception/);
      return true;
    });
    assert.equal(fake.requestCount, before + 4);
    assert.equal(fake.documents(INDEX).has('w-1'), false);
  });

  test('succeeds when the transport retry gets through', async () => {
    fake.failNextRequests(1, 503);
    const before = fake.requestCount;

    const outcomes = await createDocuments(client, INDEX, [doc('w-2')]);

    assert.deepEqual(outcomes.get('w-2'), { outcome: 'created' });
    assert.equal(fake.requestCount, before + 2);
  });

  test('sends nothing for an empty list', async () => {
    const before = fake.requestCount;

    assert.equal((await createDocuments(client, INDEX, [])).size, 0);
    assert.equal(fake.requestCount, before);
  });

  test('rejects duplicate ids before sending', async () => {
    const before = fake.requestCount;

    await assert.rejects(createDocuments(client, INDEX, [doc('x'), doc('x')]), /duplicate document id x/);
    assert.equal(fake.requestCount, before);
  });
});

describe('Elasticsearch fake', () => {
  let fake: ElasticsearchFake;
  // The package's own client, because these tests send calls the product does not make.
  let client: Client;

  before(async () => {
    fake = await startElasticsearchFake();
    client = new Client({ node: fake.url, requestTimeout: 2_000, maxRetries: 0 });
  });
  afterEach(() => {
    fake.setProductHeader(true);
  });
  after(async () => {
    await client.close();
    await fake.close();
  });

  test('sends the product header on every response', async () => {
    const info = await fetch(`${fake.url}/`);
    const error = await fetch(`${fake.url}/${INDEX}/_doc/missing`);

    assert.equal(info.headers.get('x-elastic-product'), 'Elasticsearch');
    assert.equal(((await info.json()) as { tagline: string }).tagline, 'You Know, for Search');
    assert.equal(error.status, 404);
    assert.equal(error.headers.get('x-elastic-product'), 'Elasticsearch');
  });

  test('makes the client fail without the product header', async () => {
    fake.setProductHeader(false);

    await assert.rejects(client.info(), errors.ProductNotSupportedError);
    await assert.rejects(
      createDocuments(client, INDEX, [doc('p-1')]),
      /did not identify itself as Elasticsearch/,
    );
  });

  test('returns 409 on a duplicate single create', async () => {
    await client.create({ index: INDEX, id: 'c-1', document: { n: 1 } });

    await assert.rejects(client.create({ index: INDEX, id: 'c-1', document: { n: 2 } }), (error: unknown) => {
      assert.ok(error instanceof errors.ResponseError);
      assert.equal(error.statusCode, 409);
      assert.equal(
        (error.body as { error: { type: string } }).error.type,
        'version_conflict_engine_exception',
      );
      return true;
    });
    assert.deepEqual(fake.documents(INDEX).get('c-1'), { n: 1 });
  });

  test('returns 409 on index with op_type create', async () => {
    await client.index({ index: INDEX, id: 'o-1', document: { n: 1 }, op_type: 'create', refresh: true });

    await assert.rejects(
      client.index({ index: INDEX, id: 'o-1', document: { n: 2 }, op_type: 'create' }),
      /version_conflict_engine_exception/,
    );
  });

  test('rejects malformed NDJSON like Elasticsearch', async () => {
    const post = (body: string) =>
      fetch(`${fake.url}/_bulk`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body,
      });
    const errorType = async (response: Response) =>
      ((await response.json()) as { error: { type: string } }).error.type;

    const unterminated = await post('{"create":{"_index":"a","_id":"1"}}\n{"n":1}');
    const notJson = await post('{"create":\n{"n":1}\n');
    const unknownAction = await post('{"upsert":{"_index":"a","_id":"1"}}\n{"n":1}\n');
    const missingSource = await post('{"create":{"_index":"a","_id":"1"}}\n');

    assert.equal(unterminated.status, 400);
    assert.equal(await errorType(unterminated), 'illegal_argument_exception');
    assert.equal(notJson.status, 400);
    assert.equal(await errorType(notJson), 'x_content_parse_exception');
    assert.equal(unknownAction.status, 400);
    assert.equal(await errorType(unknownAction), 'illegal_argument_exception');
    assert.equal(missingSource.status, 400);
    assert.equal(await errorType(missingSource), 'action_request_validation_exception');
  });

  test('reports an invalid document or index per item', async () => {
    const body =
      '{"create":{"_index":"Upper","_id":"1"}}\n{"n":1}\n{"index":{"_index":"ok","_id":"2"}}\nnot json\n';

    const response = await fetch(`${fake.url}/_bulk?refresh=true`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.elasticsearch+x-ndjson; compatible-with=9' },
      body,
    });
    const result = (await response.json()) as {
      errors: boolean;
      items: Array<Record<string, { status: number; error?: { type: string } }>>;
    };

    assert.equal(response.status, 200);
    assert.equal(result.errors, true);
    assert.equal(result.items[0]?.create?.error?.type, 'invalid_index_name_exception');
    assert.equal(result.items[1]?.index?.status, 400);
    assert.equal(result.items[1]?.index?.error?.type, 'document_parsing_exception');
  });

  test('rejects unsupported media types and refresh values', async () => {
    const plain = await fetch(`${fake.url}/_bulk`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: '{}\n',
    });
    const oldVersion = await fetch(`${fake.url}/_bulk`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.elasticsearch+x-ndjson; compatible-with=7' },
      body: '{"create":{"_index":"a","_id":"1"}}\n{"n":1}\n',
    });
    const refresh = await fetch(`${fake.url}/_bulk?refresh=soon`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"create":{"_index":"a","_id":"1"}}\n{"n":1}\n',
    });

    assert.equal(plain.status, 406);
    assert.equal(oldVersion.status, 400);
    assert.equal(refresh.status, 400);
  });
});

describe('createElasticsearchClient', () => {
  test('rejects credentials in the node URL without quoting them', () => {
    assert.throws(
      () =>
        createElasticsearchClient({
          node: 'http://elastic:s3cret-pass@127.0.0.1:9200',
          requestTimeoutMs: 1_000,
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.ok(!error.message.includes('s3cret-pass'), error.message);
        return true;
      },
    );
  });

  test('rejects incomplete credentials and bad settings', () => {
    const base = { node: 'http://127.0.0.1:9200', requestTimeoutMs: 1_000 };
    assert.throws(() => createElasticsearchClient({ ...base, username: 'elastic' }), ConfigError);
    assert.throws(() => createElasticsearchClient({ ...base, node: 'ftp://127.0.0.1' }), ConfigError);
    assert.throws(() => createElasticsearchClient({ ...base, requestTimeoutMs: 0 }), ConfigError);
  });

  test('sends basic auth when given a username and password', async () => {
    const fake = await startElasticsearchFake();
    const client = createElasticsearchClient({
      node: fake.url,
      username: 'elastic',
      password: 'pw',
      requestTimeoutMs: 1_000,
    });
    try {
      await createDocuments(client, INDEX, [doc('b-1')]);
      assert.equal(fake.requests.at(-1)?.authScheme, 'Basic');
    } finally {
      await client.close();
      await fake.close();
    }
  });
});
