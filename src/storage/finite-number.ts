// What "parses as a finite number" means for property filters (`property.NAME_gt=10`), in both metadata
// stores: SQLite calls it as the SQL function blobd_number, PostgreSQL's blobd_number (002-catalog.sql)
// follows the same rule, and both use it on the filter's value.

/** A number written in decimal (`12`, `-3.5`, `1e6`), or null. */
export function finiteNumber(text: unknown): number | null {
  if (typeof text === 'number') return Number.isFinite(text) ? text : null;
  if (typeof text !== 'string' || !/^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?\s*$/i.test(text)) return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}
