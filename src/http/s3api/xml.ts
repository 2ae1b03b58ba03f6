// S3's XML, both ways: answers rendered from plain values, and a small parser for the few request bodies
// the front reads (DeleteObjects, CreateBucketConfiguration). The parser knows elements, attributes (read
// and ignored: xmlns), text, CDATA and the predefined and numeric entities; a DOCTYPE (and so any entity
// of its own) is refused, and the body is bounded: nothing here can grow past what the client sent.
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Readable } from 'node:stream';
import { S3Error, xmlEscape } from './errors.ts';

export const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/';
/** The largest request body read as XML (S3 allows 1000 keys of 1024 bytes in a DeleteObjects). */
export const MAX_XML_BYTES = 2 * 1024 * 1024;

/** An element's content: text, a nested element, a list of either, or nothing (null/undefined: left out). */
export type XmlValue = string | number | boolean | null | undefined | XmlNode | XmlValue[];
export interface XmlNode {
  readonly [name: string]: XmlValue;
}

function renderValue(name: string, value: XmlValue): string {
  if (value === null || value === undefined) return '';
  if (Array.isArray(value)) return value.map((v) => renderValue(name, v)).join('');
  if (typeof value === 'object') return `<${name}>${renderNode(value)}</${name}>`;
  return `<${name}>${xmlEscape(String(value))}</${name}>`;
}

function renderNode(node: XmlNode): string {
  return Object.entries(node)
    .map(([k, v]) => renderValue(k, v))
    .join('');
}

/** A whole answer document: `<root xmlns="…">…</root>`. */
export function renderXml(root: string, body: XmlNode): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${S3_NS}">${renderNode(body)}</${root}>`;
}

/** An XML answer through the context, so the headers set on it (request ids) go out too. */
export function xmlAnswer(c: Context, root: string, body: XmlNode, status = 200, headers: Record<string, string> = {}): Response {
  return c.body(renderXml(root, body), status as ContentfulStatusCode, { 'Content-Type': 'application/xml', ...headers });
}

/** A parsed element: its local name (prefix dropped), child elements in order, and its text. */
export interface XmlElement {
  readonly name: string;
  readonly children: XmlElement[];
  text: string;
}

const malformed = (why: string) => new S3Error('MalformedXML', 400, `The XML you provided was not well-formed or did not validate against our published schema (${why}).`);

const NAME = /^[A-Za-z_][\w.:-]*/;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Text with its references resolved: the five predefined entities and numeric ones; any other '&' is malformed. */
function decodeText(raw: string): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(/&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|[A-Za-z]{1,8})?(;)?/g, (_m, e: string | undefined, semi: string | undefined) => {
    if (e === undefined || semi === undefined) throw malformed('a bare &');
    if (e[0] !== '#') {
      const ch = PREDEFINED[e];
      if (ch === undefined) throw malformed('unknown entity');
      return ch;
    }
    const code = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    if (code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) throw malformed('bad character reference');
    return String.fromCodePoint(code);
  });
}

/** Parses one XML document into its root element. Throws MalformedXML for anything else. */
export function parseXml(text: string): XmlElement {
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    const chunk = lt < 0 ? text.slice(i) : text.slice(i, lt);
    if (chunk.length > 0) {
      if (stack.length === 0) {
        if (chunk.trim() !== '') throw malformed('text outside the root element');
      } else {
        stack.at(-1)!.text += decodeText(chunk);
      }
    }
    if (lt < 0) break;
    i = lt;
    if (text.startsWith('<?', i)) {
      const end = text.indexOf('?>', i);
      if (end < 0) throw malformed('unterminated declaration');
      i = end + 2;
    } else if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i);
      if (end < 0) throw malformed('unterminated comment');
      i = end + 3;
    } else if (text.startsWith('<![CDATA[', i)) {
      const end = text.indexOf(']]>', i);
      if (end < 0 || stack.length === 0) throw malformed('misplaced CDATA');
      stack.at(-1)!.text += text.slice(i + 9, end);
      i = end + 3;
    } else if (text.startsWith('<!', i)) {
      throw malformed('a DOCTYPE is not accepted');
    } else if (text.startsWith('</', i)) {
      const m = NAME.exec(text.slice(i + 2, i + 2 + 300));
      const open = stack.pop();
      if (!m || !open || localName(m[0]) !== open.name) throw malformed('mismatched end tag');
      i += 2 + m[0].length;
      skipSpace();
      if (text[i] !== '>') throw malformed('bad end tag');
      i++;
    } else {
      const m = NAME.exec(text.slice(i + 1, i + 1 + 300));
      if (!m) throw malformed('bad tag');
      if (root && stack.length === 0) throw malformed('more than one root element');
      const el: XmlElement = { name: localName(m[0]), children: [], text: '' };
      i += 1 + m[0].length;
      // Attributes: name="value" or name='value', read past and ignored.
      for (let n = 0; ; n++) {
        if (n > 64) throw malformed('too many attributes');
        skipSpace();
        if (text[i] === '>' || text.startsWith('/>', i)) break;
        const a = /^[A-Za-z_][\w.:-]*\s*=\s*("[^"<]*"|'[^'<]*')/.exec(text.slice(i, i + 4096));
        if (!a) throw malformed('bad attribute');
        i += a[0].length;
      }
      if (stack.length > 0) stack.at(-1)!.children.push(el);
      else root = el;
      if (text.startsWith('/>', i)) {
        i += 2;
      } else {
        i++;
        if (stack.length >= 32) throw malformed('nested too deep');
        stack.push(el);
      }
    }
  }
  if (!root || stack.length > 0) throw malformed(root ? 'unclosed element' : 'no root element');
  return root;
}

function localName(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(colon + 1);
}

/** The first child element named `name`, if any. */
export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

/** What every XML body being read holds at once, process-wide: per request bounds alone scale with clients. */
const XML_BUDGET = 64 * 1024 * 1024;
let buffered = 0;

/**
 * Reads a request body of at most `max` bytes as UTF-8 text (bounded: never the whole of a larger one).
 * While all XML bodies in flight hold XML_BUDGET, another is refused (503 SlowDown, which clients retry).
 */
export async function readXmlBody(body: Readable, max = MAX_XML_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const n = (chunk as Buffer).length;
      size += n;
      buffered += n;
      if (size > max) {
        body.destroy();
        throw malformed(`the body is larger than ${max} bytes`);
      }
      if (buffered > XML_BUDGET) {
        body.destroy();
        throw new S3Error('SlowDown', 503, 'Please reduce your request rate.', {}, { 'Retry-After': '1' });
      }
      chunks.push(chunk as Buffer);
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
    } catch {
      throw malformed('not UTF-8');
    }
  } finally {
    buffered -= size;
  }
}
