/**
 * Saving the reconciler's durable state: state.json is written only when what it was written from
 * changed (its commit, its format version, or an app's entry object: entries are replaced, never
 * changed in place, so comparing identities is enough and nothing is serialized to find out), and
 * then the state journal, whose every record state.json now holds, is cleared.
 */
import { messageOf } from "./errors.ts";
import { redact } from "./redact.ts";
import { writeState, type DurableState } from "./state.ts";
import type { StateJournal } from "./state-journal.ts";

/** What a {@link StateSaver} writes and where it reports what it could not. */
export interface StateSaverDeps {
  /** What is deployed; the saver only reads it. */
  state: DurableState;
  statePath: string;
  journal?: StateJournal | undefined;
  /** Reports a problem once (an app left out of state.json, a journal that cannot be cleared). */
  warnOnce: (message: string) => void;
}

/** Writes state.json when it changed since the last write (or since `state` was read). */
export class StateSaver {
  readonly #d: StateSaverDeps;
  #saved: StateFingerprint;

  constructor(deps: StateSaverDeps) {
    this.#d = deps;
    this.#saved = fingerprintOf(deps.state);
  }

  /** Writes state.json if anything in it changed, then clears the journal. Throws when state.json cannot be written. */
  async save(): Promise<void> {
    const now = fingerprintOf(this.#d.state);
    if (!sameFingerprint(now, this.#saved)) {
      const omitted = await writeState(this.#d.statePath, this.#d.state);
      // The app keeps running; after a restart it is deployed from git instead of restored.
      for (const why of Object.values(omitted)) this.#d.warnOnce(why);
      this.#saved = now;
    }
    // state.json now holds every action the journal recorded.
    await this.#d.journal?.clear().catch((error: unknown) => {
      this.#d.warnOnce(`cannot clear the state journal: ${redact(messageOf(error))}`);
    });
  }
}

/** What state.json was written from: its commit and the entry object of each app (entries are replaced, never changed in place). */
type StateFingerprint = { commit: string | undefined; version: number; apps: Map<string, unknown> };

function fingerprintOf(state: DurableState): StateFingerprint {
  return { commit: state.commit, version: state.version, apps: new Map(Object.entries(state.apps)) };
}

/** Whether two fingerprints name the same commit and the same entry objects (no serialization). */
function sameFingerprint(a: StateFingerprint, b: StateFingerprint): boolean {
  if (a.commit !== b.commit || a.version !== b.version || a.apps.size !== b.apps.size) return false;
  for (const [name, entry] of a.apps) if (b.apps.get(name) !== entry) return false;
  return true;
}
