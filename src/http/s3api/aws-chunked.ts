// Decodes an aws-chunked body (`hex-size[;chunk-signature=sig]\r\n<data>\r\n … 0…\r\n[trailers]\r\n`) as it
// streams: content passes through without a copy, each chunk signature is checked against the chain seeded
// by the request's signature, and trailers are read. Never buffers more than one framing line.
import { createHash, createHmac, timingSafeEqual, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { S3Error } from './errors.ts';

/** The chain a signed aws-chunked body continues (from VerifiedRequest). */
export interface ChunkSigning {
  readonly signingKey: Buffer;
  readonly seedSignature: string;
  readonly amzDate: string;
  readonly scope: string;
}

export interface AwsChunkedOptions {
  /** Set for STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]: every chunk (and the trailer, if any) is signed. */
  readonly signing?: ChunkSigning;
  /** True when the trailer is signed (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER). */
  readonly signedTrailer?: boolean;
  /** Lower-case names the x-amz-trailer header announced: each must arrive. */
  readonly trailerNames?: readonly string[];
  /** x-amz-decoded-content-length: the decoded body must be exactly this long. */
  readonly decodedLength?: number;
  /**
   * Fed each piece of content before it is pushed, and asked at the end (with the trailers) whether the
   * content is right: its failure fails the stream before its end. Saves a stream hop per body.
   */
  readonly inspect?: {
    update(data: Buffer): void;
    /** A promise to wait for before the next chunk (the inspector is behind), or undefined. */
    ready?(): Promise<void> | undefined;
    finish(trailers: ReadonlyMap<string, string>): Promise<void>;
  };
}

/** The longest chunk header or trailer line accepted (a real one is under 100 bytes). */
const MAX_LINE = 4096;
/** All trailer lines together. */
const MAX_TRAILER = 16 * 1024;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

type State = 'header' | 'data' | 'data-end' | 'trailer' | 'done';

export class AwsChunkedDecoder extends Transform {
  /** Content bytes decoded so far. */
  decodedBytes = 0;
  private readonly trailerValues = new Map<string, string>();
  private state: State = 'header';
  /** Bytes of a framing line not yet ended by '\n'. */
  private line: Buffer[] = [];
  private lineLength = 0;
  private trailerLength = 0;
  private remaining = 0;
  /** CR LF after a chunk's data: how many of the two bytes were seen. */
  private crlfSeen = 0;
  private chunkSignature = '';
  private chunkHash: Hash | undefined;
  private previousSignature: string;
  private trailerSignature: string | undefined;

  constructor(private readonly options: AwsChunkedOptions = {}) {
    super();
    this.previousSignature = options.signing?.seedSignature ?? '';
  }

  /** Trailer headers (lower-case names) once the body has ended; x-amz-trailer-signature not included. */
  trailers(): ReadonlyMap<string, string> {
    return this.trailerValues;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    const behind = this.options.inspect?.ready?.();
    if (behind === undefined) callback();
    else behind.then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    try {
      // The trailer ends with the body (its final blank line may be missing: the SDK for JavaScript sends
      // `0\r\n` and nothing more); anything else cut short is an incomplete body.
      if (this.state === 'trailer' && this.lineLength === 0) this.endTrailer();
      if (this.state !== 'done') throw new S3Error('IncompleteBody', 400, 'The request body ended before the aws-chunked encoding did.');
      const expected = this.options.decodedLength;
      if (expected !== undefined && expected !== this.decodedBytes) {
        throw tooLong(expected);
      }
    } catch (err) {
      callback(err as Error);
      return;
    }
    if (this.options.inspect === undefined) callback();
    else this.options.inspect.finish(this.trailerValues).then(() => callback(), callback);
  }

  private consume(buf: Buffer): void {
    let at = 0;
    // Bounded: every pass moves `at` forward or changes state towards the end of `buf`.
    while (at < buf.length) {
      switch (this.state) {
        case 'header':
        case 'trailer': {
          const nl = buf.indexOf(0x0a, at);
          const end = nl < 0 ? buf.length : nl + 1;
          this.lineLength += end - at;
          if (this.lineLength > MAX_LINE) throw malformed('an aws-chunked framing line is too long');
          this.line.push(buf.subarray(at, end));
          at = end;
          if (nl >= 0) this.endLine();
          break;
        }
        case 'data': {
          const take = Math.min(this.remaining, buf.length - at);
          // More than x-amz-decoded-content-length said: refused now, not after the excess went downstream.
          if (this.options.decodedLength !== undefined && this.decodedBytes + take > this.options.decodedLength) throw tooLong(this.options.decodedLength);
          const data = buf.subarray(at, at + take);
          this.chunkHash?.update(data);
          this.options.inspect?.update(data);
          this.decodedBytes += take;
          this.remaining -= take;
          at += take;
          this.push(data);
          if (this.remaining === 0) {
            this.state = 'data-end';
            this.crlfSeen = 0;
          }
          break;
        }
        case 'data-end': {
          const expect = this.crlfSeen === 0 ? 0x0d : 0x0a;
          if (buf[at] !== expect) throw malformed('a chunk is longer than its size says');
          at++;
          if (++this.crlfSeen === 2) {
            this.verifyChunk();
            this.state = 'header';
          }
          break;
        }
        case 'done':
          throw malformed('there are bytes after the end of the aws-chunked body');
      }
    }
  }

  /** A whole framing line (header or trailer) arrived in this.line. */
  private endLine(): void {
    const raw = Buffer.concat(this.line, this.lineLength);
    this.line = [];
    this.lineLength = 0;
    const crlf = raw.length >= 2 && raw[raw.length - 2] === 0x0d;
    if (this.state === 'header') {
      if (!crlf) throw malformed('aws-chunked lines must end with CRLF');
      this.chunkHeader(raw.subarray(0, raw.length - 2).toString('latin1'));
    } else {
      // Trailer lines: some clients end a checksum line with a bare LF and put the CRLF on a line of its own.
      this.trailerLine(raw.subarray(0, raw.length - (crlf ? 2 : 1)).toString('latin1'));
    }
  }

  private chunkHeader(text: string): void {
    const parts = text.split(';');
    const sizeText = parts[0]!.trim();
    if (!/^[0-9a-fA-F]{1,13}$/.test(sizeText)) throw malformed(`bad aws-chunked chunk size "${sizeText.slice(0, 32)}"`);
    const size = parseInt(sizeText, 16);
    let signature: string | undefined;
    for (const ext of parts.slice(1)) {
      const eq = ext.indexOf('=');
      if (eq >= 0 && ext.slice(0, eq).trim() === 'chunk-signature') signature = ext.slice(eq + 1).trim();
    }
    if (this.options.signing !== undefined) {
      if (signature === undefined || !/^[0-9a-f]{64}$/.test(signature)) throw malformed('a chunk of a signed aws-chunked body has no chunk-signature');
      this.chunkSignature = signature;
      this.chunkHash = createHash('sha256');
    }
    if (size === 0) {
      this.verifyChunk();
      this.state = 'trailer';
      return;
    }
    this.remaining = size;
    this.state = 'data';
  }

  /** Checks the signature of the chunk just read (no-op for unsigned bodies) and moves the chain on. */
  private verifyChunk(): void {
    const signing = this.options.signing;
    if (signing === undefined || this.chunkHash === undefined) return;
    const dataHash = this.chunkHash.digest('hex');
    this.chunkHash = undefined;
    const toSign = `AWS4-HMAC-SHA256-PAYLOAD\n${signing.amzDate}\n${signing.scope}\n${this.previousSignature}\n${EMPTY_SHA256}\n${dataHash}`;
    checkSignature(signing.signingKey, toSign, this.chunkSignature);
    this.previousSignature = this.chunkSignature;
  }

  private trailerLine(text: string): void {
    // Blank lines count too: the trailer section is bounded however it is filled.
    this.trailerLength += text.length + 2;
    if (this.trailerLength > MAX_TRAILER) throw malformed('the aws-chunked trailer is too long');
    // The blank line that closes the trailer; the body must end here (checked at the end, in _flush), except
    // that the variant above puts more trailer lines after it.
    if (text === '') return;
    const colon = text.indexOf(':');
    if (colon <= 0) throw malformed('an aws-chunked trailer line must be name:value');
    const name = text.slice(0, colon).trim().toLowerCase();
    const value = text.slice(colon + 1).trim();
    if (name === 'x-amz-trailer-signature') this.trailerSignature = value;
    else this.trailerValues.set(name, value);
  }

  private endTrailer(): void {
    this.state = 'done';
    for (const name of this.options.trailerNames ?? []) {
      if (!this.trailerValues.has(name)) throw malformed(`the trailer ${name} was announced in x-amz-trailer but not sent`);
    }
    const signing = this.options.signing;
    if (signing === undefined || this.options.signedTrailer !== true) return;
    if (this.trailerSignature === undefined) throw malformed('a signed aws-chunked trailer has no x-amz-trailer-signature');
    const canonical = [...this.trailerValues]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => `${name}:${value}\n`)
      .join('');
    const hash = createHash('sha256').update(canonical, 'latin1').digest('hex');
    checkSignature(signing.signingKey, `AWS4-HMAC-SHA256-TRAILER\n${signing.amzDate}\n${signing.scope}\n${this.previousSignature}\n${hash}`, this.trailerSignature);
  }
}

function checkSignature(signingKey: Buffer, stringToSign: string, presented: string): void {
  const expected = createHmac('sha256', signingKey).update(stringToSign, 'utf8').digest();
  const given = /^[0-9a-f]{64}$/.test(presented) ? Buffer.from(presented, 'hex') : undefined;
  if (given === undefined || !timingSafeEqual(expected, given)) {
    throw new S3Error('SignatureDoesNotMatch', 403, 'The chunk signature we calculated does not match the signature you provided.');
  }
}

function tooLong(declared: number): S3Error {
  return new S3Error('IncompleteBody', 400, `The body's length is not the ${declared} bytes x-amz-decoded-content-length declared.`);
}

function malformed(why: string): S3Error {
  return new S3Error('IncompleteBody', 400, `Malformed aws-chunked body: ${why}.`);
}
