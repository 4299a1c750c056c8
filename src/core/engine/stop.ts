/**
 * Why a run stops starting tasks: a signal from the CLI or the run's deadline. Tasks watch
 * `abortSignal`, which fires only when the grace period after a stop is over.
 */
export type StopReason = 'SIGTERM' | 'SIGINT' | 'deadline';

export class StopController {
  #reason: StopReason | undefined;
  readonly #listeners = new Set<(reason: StopReason) => void>();
  readonly #abort = new AbortController();

  get reason(): StopReason | undefined {
    return this.#reason;
  }

  get stopping(): boolean {
    return this.#reason !== undefined;
  }

  /** Fires when in-flight work must give up: the grace period after a stop has passed. */
  get abortSignal(): AbortSignal {
    return this.#abort.signal;
  }

  stop(reason: StopReason): void {
    if (this.#reason !== undefined) {
      return;
    }
    this.#reason = reason;
    for (const listener of this.#listeners) {
      listener(reason);
    }
  }

  abort(): void {
    this.#abort.abort(new Error(`run stopped (${this.#reason ?? 'aborted'}) and its grace period is over`));
  }

  /** Resolves when `stop` is called. */
  onStop(listener: (reason: StopReason) => void): () => void {
    if (this.#reason !== undefined) {
      listener(this.#reason);
      return () => undefined;
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
