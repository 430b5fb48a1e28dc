// progress.ts — the progress line of long commands: on a terminal, one line redrawn in place
// (step, loss, steps/s, ETA); otherwise (logs, CI, pipes) a plain line every `every` steps.
export interface ProgressOptions {
  /** Redraw in place (default: whether stderr is a terminal). */
  tty?: boolean;
  /** Plain mode: print every this many steps (and the last one). */
  every?: number;
  write?: (s: string) => void;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export class Progress {
  readonly #total: number;
  readonly #first: number;
  readonly #tty: boolean;
  readonly #every: number;
  readonly #write: (s: string) => void;
  readonly #started = performance.now();
  #smoothed: number | undefined;
  #drawn = false;

  /** `first`: the step the run starts from (non-zero after a resume), so rates count only this run. */
  constructor(total: number, first: number, opts: ProgressOptions = {}) {
    this.#total = total;
    this.#first = first;
    this.#tty = opts.tty ?? Boolean(process.stderr.isTTY);
    this.#every = Math.max(1, opts.every ?? Math.max(1, Math.round(total / 20)));
    this.#write = opts.write ?? ((s) => (this.#tty ? process.stderr.write(s) : process.stdout.write(s)));
  }

  /** `done`: steps finished so far (1-based); `loss`: this step's training loss. */
  update(done: number, loss: number): void {
    // An exponential average: single ZO batch losses are noisy.
    if (Number.isFinite(loss)) this.#smoothed = this.#smoothed === undefined ? loss : 0.9 * this.#smoothed + 0.1 * loss;
    const elapsed = (performance.now() - this.#started) / 1000;
    const rate = (done - this.#first) / elapsed;
    const eta = (this.#total - done) / rate;
    const width = String(this.#total).length;
    const line = `step ${String(done).padStart(width)}/${this.#total}  loss ${this.#smoothed?.toFixed(4) ?? 'nan'}  ` +
      `${rate.toFixed(2)} steps/s  ETA ${formatDuration(eta)}`;
    if (this.#tty) {
      const frac = done / this.#total;
      const bar = '#'.repeat(Math.round(frac * 20)).padEnd(20, '.');
      this.#write(`\r[${bar}] ${line}\x1b[K`);
      this.#drawn = true;
    } else if (done % this.#every === 0 || done === this.#total) {
      this.#write(`${line}\n`);
    }
  }

  /** Ends the redrawn line so the next output starts on a fresh one. */
  message(text: string): void {
    this.end();
    process.stdout.write(`${text}\n`);
  }

  end(): void {
    if (this.#drawn) this.#write('\n');
    this.#drawn = false;
  }
}
