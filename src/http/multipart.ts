// multipart/form-data bodies, streamed: the `file` part goes straight to the store as it arrives (never
// buffered), small text parts (owner, metadata) are collected. Parsing is busboy's; this module only says
// which parts matter and turns parser trouble into our JSON 400.
import busboy from 'busboy';
import type { Context } from 'hono';
import type { Readable } from 'node:stream';
import { BlobdError } from '../core/errors.ts';
import type { AppEnv } from './env.ts';
import { requestBody } from './request-body.ts';

export function isMultipart(c: Context<AppEnv>): boolean {
  return /^multipart\/form-data\b/i.test(c.req.header('content-type') ?? '');
}

export interface FilePart {
  readonly stream: Readable;
  readonly filename: string | undefined;
  readonly contentType: string | undefined;
}

/**
 * Feeds the first part named `file` to `store` while the body streams in, with the fields that came
 * before it (so they can be checked first) and a promise of every field once the whole form has been read
 * (so the parts after the file can still be applied before anything is recorded). Resolves with the
 * store's result and every small field. Other file parts are discarded.
 */
export function withFilePart<T>(
  c: Context<AppEnv>,
  store: (file: FilePart, fieldsSoFar: Readonly<Record<string, string>>, allFields: Promise<Record<string, string>>) => Promise<T>,
): Promise<{ result: T; fields: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    const fields: Record<string, string> = {};
    let stored: Promise<T> | undefined;
    let failed = false;
    let formEnded!: (f: Record<string, string>) => void;
    let formFailed!: (err: unknown) => void;
    const allFields = new Promise<Record<string, string>>((res, rej) => {
      formEnded = res;
      formFailed = rej;
    });
    allFields.catch(() => {}); // a store that never asks must not leave it unhandled
    const fail = (err: unknown) => {
      formFailed(err);
      if (failed) return;
      failed = true;
      reject(err);
    };
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: { 'content-type': c.req.header('content-type') ?? '' },
        limits: { fields: 32, fieldSize: 256 * 1024, parts: 64 },
      });
    } catch {
      return fail(new BlobdError('invalid_request', 'a multipart/form-data body needs a boundary'));
    }
    parser.on('file', (name, stream, info) => {
      // A part cut short (a truncated form) errors on its stream: without a listener that error would be
      // unhandled and take the process down. Whoever reads the stream sees it as well.
      stream.on('error', (err) => fail(new BlobdError('invalid_request', `malformed multipart body: ${err.message}`)));
      if (name !== 'file' || stored) return void stream.resume();
      const part = { stream, filename: info.filename || undefined, contentType: info.mimeType === 'application/octet-stream' ? undefined : info.mimeType };
      // Inside an event handler: a synchronous throw must become a rejection, never an uncaught exception.
      stored = (async () => store(part, { ...fields }, allFields))();
      // The parser waits for this part to be consumed; a failed store must not leave it stuck.
      stored.catch((err: unknown) => {
        stream.resume();
        fail(err);
      });
    });
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) fail(new BlobdError('invalid_request', `the form field ${name} is too large`));
      else fields[name] = value;
    });
    // Past busboy's limits the parser drops parts silently: metadata would go missing with a 2xx.
    parser.on('fieldsLimit', () => fail(new BlobdError('invalid_request', 'the form has more than 32 fields')));
    parser.on('partsLimit', () => fail(new BlobdError('invalid_request', 'the form has more than 64 parts')));
    parser.on('error', (err: Error) => fail(new BlobdError('invalid_request', `malformed multipart body: ${err.message}`)));
    parser.on('close', () => {
      if (!stored) return fail(new BlobdError('invalid_request', 'the form has no part named "file"'));
      formEnded(fields);
      stored.then((result) => resolve({ result, fields }), fail);
    });
    const body = requestBody(c);
    body.on('error', (err) => parser.destroy(err));
    body.pipe(parser);
  });
}
