// jsonl.ts — reading JSON Lines files with errors a person can act on: every problem names the
// file and the 1-based line number, and says what the line should hold.
import { readFile } from 'node:fs/promises';

import { ZerothError } from '../errors.js';

export interface JsonlRecord {
  /** 1-based line number in the file (blank lines are skipped but still counted). */
  line: number;
  value: Record<string, unknown>;
}

/** Parses JSONL text; `file` only names the source in error messages. */
export function parseJsonl(text: string, file: string): JsonlRecord[] {
  const out: JsonlRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    if (raw.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new ZerothError('E_FORMAT', `${file}:${i + 1}: invalid JSON (${(err as Error).message}); each line must be one JSON object such as {"text": "..."}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      const found = Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value;
      throw new ZerothError('E_FORMAT', `${file}:${i + 1}: expected a JSON object, found ${found}`);
    }
    out.push({ line: i + 1, value: value as Record<string, unknown> });
  }
  if (out.length === 0) throw new ZerothError('E_FORMAT', `${file}: the file is empty; it needs one JSON object per line`);
  return out;
}

export async function readJsonl(file: string): Promise<JsonlRecord[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ZerothError('E_IO', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseJsonl(text, file);
}

/** The string field `key` of a record, or an E_FORMAT error naming the file and line. */
export function stringField(r: JsonlRecord, key: string, file: string): string {
  const v = r.value[key];
  if (v === undefined) throw new ZerothError('E_FORMAT', `${file}:${r.line}: missing field "${key}" (a string)`);
  if (typeof v !== 'string') throw new ZerothError('E_FORMAT', `${file}:${r.line}: field "${key}" must be a string, found ${JSON.stringify(v)}`);
  return v;
}

/** Reads a JSON (not JSONL) file holding one object. */
export async function readJsonObject(file: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ZerothError('E_IO', `cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ZerothError('E_FORMAT', `${what} ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ZerothError('E_FORMAT', `${what} ${file} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}
