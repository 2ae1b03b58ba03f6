// The storage layer's file-descriptor calls, promisified once: numeric fds on Node's callback API were
// measurably cheaper than FileHandles on the hot paths (see fs-byte-store.ts), and every module under
// storage/fs/ shares the one buffer size.
import { close, fdatasync, fstat, fsync, ftruncate, open, read, write, writev } from 'node:fs';
import { promisify } from 'node:util';

/** 1 MiB reads and writes: fewer syscalls and event-loop turns than the 64 KiB default on a 1 GiB blob. */
export const IO_CHUNK = 1 << 20;

export const openFd = promisify(open);
export const closeFd = promisify(close);
export const fsyncFd = promisify(fsync);
export const fdatasyncFd = promisify(fdatasync);
export const fstatFd = promisify(fstat);
export const ftruncateFd = promisify(ftruncate);
export const readFd = promisify(read);
export const writeFd = promisify(write);
export const writevFd = promisify(writev);
