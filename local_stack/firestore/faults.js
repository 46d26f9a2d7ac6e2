// Seeded commit faults: what production Firestore does on a bad day to a Commit.
// - fail: the commit is refused with UNAVAILABLE before anything is applied (the transaction
//   stays usable, so the client library's own retry of the Commit can still succeed);
// - drop: the commit is applied, then its answer is lost: the client sees DEADLINE_EXCEEDED
//   or UNAVAILABLE (the gapic client retries an UNAVAILABLE Commit, and a transaction it has
//   already committed then answers INVALID_ARGUMENT, as an expired one does).
// Commits are numbered from 1 in arrival order (only those whose documents match
// `path_pattern`, when set); a fault hits the listed numbers, or each commit with a rate.
"use strict";

const { status: Status } = require("@grpc/grpc-js");

const DROP_CODES = { DEADLINE_EXCEEDED: Status.DEADLINE_EXCEEDED, UNAVAILABLE: Status.UNAVAILABLE };
const DEFAULTS = Object.freeze({
  seed: 0,
  path_pattern: null,
  fail_commits: [],
  fail_commit_rate: 0,
  drop_answer_commits: [],
  drop_answer_rate: 0,
  drop_answer_code: "DEADLINE_EXCEEDED",
});

const MAX_LOGGED = 10_000;

class FaultConfigError extends Error {}

function parseConfig(values) {
  if (values === null || typeof values !== "object" || Array.isArray(values)) {
    throw new FaultConfigError("faults must be a JSON object");
  }
  const config = { ...DEFAULTS };
  for (const [name, value] of Object.entries(values)) {
    if (!(name in DEFAULTS)) throw new FaultConfigError(`unknown fault setting '${name}'`);
    config[name] = value;
  }
  if (!Number.isInteger(config.seed)) throw new FaultConfigError("'seed' must be an integer");
  for (const name of ["fail_commits", "drop_answer_commits"]) {
    const list = config[name];
    if (!Array.isArray(list) || !list.every((n) => Number.isInteger(n) && n >= 1)) {
      throw new FaultConfigError(`'${name}' must be a list of commit numbers (from 1)`);
    }
  }
  for (const name of ["fail_commit_rate", "drop_answer_rate"]) {
    const rate = config[name];
    if (typeof rate !== "number" || !(rate >= 0 && rate <= 1)) {
      throw new FaultConfigError(`'${name}' must be between 0 and 1, got ${rate}`);
    }
  }
  if (!(config.drop_answer_code in DROP_CODES)) {
    throw new FaultConfigError(
      `'drop_answer_code' must be one of ${Object.keys(DROP_CODES).join(", ")}`,
    );
  }
  if (config.path_pattern !== null) {
    try {
      new RegExp(config.path_pattern);
    } catch (error) {
      throw new FaultConfigError(`'path_pattern' is not a regular expression: ${error.message}`);
    }
  }
  return config;
}

/** mulberry32: a small seeded PRNG, so a run's faults can be replayed from its seed. */
function seededRandom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class CommitFaults {
  constructor(values = {}) {
    this.configure(values);
  }

  /** Replace the settings, restart the numbering and the RNG from the seed. */
  configure(values) {
    this.config = parseConfig(values);
    this.pattern = this.config.path_pattern === null ? null : new RegExp(this.config.path_pattern);
    this.random = seededRandom(this.config.seed);
    this.commits = 0;
    this.injected = [];
  }

  /** The fault for a commit writing `paths`: null, {kind: "fail"} or {kind: "drop", code}. */
  decide(paths) {
    if (this.pattern && !paths.some((path) => this.pattern.test(path))) return null;
    const number = ++this.commits;
    // Draw both every time, so enabling one fault does not shift the other's sequence.
    const failDraw = this.random() < this.config.fail_commit_rate;
    const dropDraw = this.random() < this.config.drop_answer_rate;
    let fault = null;
    if (this.config.fail_commits.includes(number) || failDraw) {
      fault = { kind: "fail", code: Status.UNAVAILABLE };
    } else if (this.config.drop_answer_commits.includes(number) || dropDraw) {
      fault = { kind: "drop", code: DROP_CODES[this.config.drop_answer_code] };
    }
    // The list is for inspection; a long run keeps its first entries and the count.
    if (fault && this.injected.length < MAX_LOGGED) {
      this.injected.push({
        commit: number,
        fault: fault.kind === "fail" ? "fail_commit" : "drop_answer",
        code: fault.kind === "fail" ? "UNAVAILABLE" : this.config.drop_answer_code,
        paths,
      });
    }
    return fault;
  }

  stats() {
    return { commits: this.commits, injected: this.injected };
  }
}

module.exports = { CommitFaults, FaultConfigError, DEFAULTS };
