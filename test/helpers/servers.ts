// What the helpers that start real servers (PostgreSQL, Ceph RGW, nginx) share: the skip-or-fail rule for
// a server that is not installed, and a free port for servers that cannot listen on port 0 and tell us.
import { createServer, type AddressInfo } from 'node:net';

/**
 * node:test options for a test that needs a server: none when `why` is null; else skipped with the reason,
 * but under CI=true this throws, so the file fails (CI installs every server the tests need).
 */
export function requiredServerOptions(why: string | null): { skip?: string } {
  if (!why) return {};
  if (process.env.CI === 'true') throw new Error(`CI=true and ${why}`);
  return { skip: why };
}

/** A port that was free a moment ago on 127.0.0.1; the caller checks that its server got it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
