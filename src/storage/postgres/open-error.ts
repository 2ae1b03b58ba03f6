// What a failure to open the PostgreSQL database says: where (the URL without its password) and why, and
// never the password itself — the message ends up in logs and on terminals.

/** The URL with its password replaced by ***, or a placeholder when it does not parse. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable database URL)';
  }
}

/** The password of a URL, as written and decoded (either may appear in a message), or none. */
function passwords(url: string): string[] {
  const found = new Set<string>();
  const m = /^[a-z]+:\/\/[^:@/]*:([^@]*)@/i.exec(url);
  if (m?.[1]) {
    found.add(m[1]);
    try {
      found.add(decodeURIComponent(m[1]));
    } catch {
      // not percent-encoded validly: the raw form is all there is
    }
  }
  return [...found].filter((p) => p.length > 0);
}

/** `text` with every occurrence of the URL's password replaced by ***. */
export function redact(text: string, url: string): string {
  let out = text;
  for (const p of passwords(url)) out = out.split(p).join('***');
  return out;
}

/** A new error (no cause, no copied properties that might hold the URL) safe to show, with the original's code. */
export function openError(err: unknown, url: string): Error {
  const e = err as { message?: string; code?: string; name?: string };
  const reason = redact(String(e?.message ?? err), url);
  const out = new Error(`cannot open the PostgreSQL database ${redactUrl(url)}: ${reason}`);
  if (e?.name === 'SchemaTooNew') out.name = 'SchemaTooNew';
  if (typeof e?.code === 'string') Object.assign(out, { code: e.code });
  return out;
}
