// One daemon per data directory. Two would truncate each other's upload sessions at start and race on
// every digest. The lock is an exclusive SQLite lock on data/blobd.lock: the operating system drops it
// when the process dies, even by kill -9, so a crash never leaves a stale lock behind.
import Database from 'better-sqlite3';
import { ensurePrivateFile } from '../fs/private-file.ts';

export interface DataDirLock {
  release(): void;
}

export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
}

export function lockDataDir(lockFile: string): DataDirLock {
  // 0600, and so is blobd.lock-journal, which SQLite keeps beside it while the lock is held.
  ensurePrivateFile(lockFile);
  const db = new Database(lockFile);
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      throw new DataDirInUseError('the data directory is in use by another blobd process');
    }
    throw err;
  }
  return {
    release() {
      if (db.open) {
        db.exec('ROLLBACK');
        db.close();
      }
    },
  };
}
