// A thin client for the upload-session protocol, so tests read as protocol steps.
import { request as httpRequest } from 'node:http';
import type { Daemon } from './daemon.ts';

export interface Session {
  id: string;
  token: string;
}

export async function initiate(d: Daemon, query = ''): Promise<Session> {
  const res = await d.api(`/api/blobs/uploads${query ? `?${query}` : ''}`, { method: 'POST' });
  if (res.status !== 202) throw new Error(`initiate → ${res.status} ${await res.text()}`);
  const body = (await res.json()) as Session;
  return { id: body.id, token: body.token };
}

export function append(d: Daemon, s: Session, body: BodyInit, headers: Record<string, string> = {}, init: RequestInit = {}) {
  const streamed = body instanceof ReadableStream ? { duplex: 'half' } : {};
  return d.api(`/api/blobs/uploads/${s.id}/append`, {
    method: 'POST',
    body,
    auth: false,
    headers: { 'upload-token': s.token, ...headers },
    ...streamed,
    ...init,
  } as RequestInit & { auth: boolean });
}

export function complete(d: Daemon, s: Session, query = '', body?: BodyInit, headers: Record<string, string> = {}) {
  return d.api(`/api/blobs/uploads/${s.id}/complete${query ? `?${query}` : ''}`, {
    method: 'POST',
    body,
    auth: false,
    headers: { 'upload-token': s.token, ...headers },
  });
}

export async function status(d: Daemon, s: Session): Promise<{ status: number; offset: number; state: string | null }> {
  const res = await d.api(`/api/blobs/uploads/${s.id}/status`, { auth: false, headers: { 'upload-token': s.token } });
  await res.arrayBuffer();
  return { status: res.status, offset: Number(res.headers.get('upload-offset')), state: res.headers.get('upload-state') };
}

/** A body that sends `data` in pieces and then waits for `release()` before it sends the rest. */
export function heldBody(data: Uint8Array, holdAfter: number) {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      if (sent >= holdAfter) await gate;
      if (sent >= data.length) return ctl.close();
      const end = sent < holdAfter ? Math.min(holdAfter, sent + 256 * 1024) : Math.min(data.length, sent + 256 * 1024);
      ctl.enqueue(data.subarray(sent, end));
      sent = end;
    },
  });
  return { stream, release, sent: () => sent };
}

/**
 * Sends headers with `Expect: 100-continue` and a Content-Length, and the body only if the server says
 * 100 Continue. Resolves with the final status and whether the go-ahead ever came.
 */
export function requestWithExpect(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: Buffer,
): Promise<{ status: number; continued: boolean; body: string }> {
  return new Promise((resolve, reject) => {
    let continued = false;
    const req = httpRequest(url, {
      method,
      headers: { 'content-length': String(body.length), ...headers, expect: '100-continue' },
    });
    req.on('continue', () => {
      continued = true;
      req.end(body);
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => {
        resolve({ status: res.statusCode!, continued, body: text });
        req.destroy();
      });
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}
