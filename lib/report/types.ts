// The report: every figure sw-report prints, in one document. Each format
// (text, markdown, json, html, prometheus) and the check are views of it.
// Times are ISO 8601 UTC strings, durations in seconds unless named _ms.

export type Status = 'OK' | 'WARNING' | 'CRITICAL' | 'UNKNOWN';
export type Tier = 'normal' | 'warning' | 'critical';

/** One alert of `--check`, evaluated at `until` over the check window. */
export interface Alert {
  /** success_rate, progress, error_rate, checkpoints, disk, escalation, config, writable, queue */
  name: string;
  status: Status;
  /** One short phrase: "success rate 20% over 1h". */
  message: string;
  /** The measured value (null: nothing to measure, such as no task finished). */
  value: number | null;
  /** Thresholds in the value's unit; null where the alert has none. */
  warning: number | null;
  critical: number | null;
  /** "below" when a lower value is worse (success rate, disk free). */
  worse: 'above' | 'below';
  /** Perfdata unit of measure: "", "s", "%". */
  uom: string;
  /** Perfdata label: success, progress_age, errors, unprotected_age, disk_free, escalations, config_errors, unwritable, queue_ignored. */
  label: string;
  /** Perfdata min and max, when the value has them. */
  min: number | null;
  max: number | null;
}

export interface RecoveryItem {
  time: string;
  reason: string | null;
  action: string | null;
  checkpoint: string | null;
  duration_ms: number | null;
  requeued: number | null;
  ok: boolean;
}

export interface GovernorChange {
  time: string;
  tier: Tier;
  quantization: string | null;
  actions: string[];
  reason: string | null;
}

export interface Report {
  version: 1;
  run: string;
  host: string;
  generated_at: string;
  since: string;
  until: string;
  /** The window's length, in hours. */
  hours: number;
  /** The worst alert's status. */
  verdict: Status;
  /** "3 tasks: 2 completed, 1 failed (4 attempts, 1 retried)" (the mail subject's figures). */
  summary: string;
  /** The first session's start (null: the agent never ran). */
  run_started: string | null;
  agent: {
    running: boolean;
    pid: number | null;
    /** The agent's own state (working, idle, paused, waiting_approval ...), from agent.json. */
    status: string | null;
    task: string | null;
    paused: boolean;
    /** The current (or last) session's start and, while running, its uptime. */
    session_started: string | null;
    uptime_s: number | null;
    /** The newest event of any kind the agent wrote. */
    last_seen: string | null;
  };
  sessions: { started: number; clean_ends: number; unclean_ends: number };
  /** Sessions started in the window after one that did not end cleanly. */
  restarts: number;
  /** What systemd knows, when it runs the unit (null otherwise). */
  systemd: { unit: string; active_state: string; n_restarts: number | null; result: string | null } | null;
  recoveries: {
    count: number;
    by_reason: Record<string, number>;
    /** Checkpoints restored (the state was invalid, or a human rolled back). */
    restored: number;
    duration_ms: { p50: number; max: number; total: number } | null;
    list: RecoveryItem[];
  };
  escalations: Array<{ time: string; reason: string | null; failures: number | null }>;
  /** Agent steps (one model call and its action each) in the window. */
  iterations: number;
  /**
   * Tasks whose final outcome fell in the window: completed, failed for good
   * (the failed attempt was the task's last by its max_attempts), cancelled.
   * A task retried counts once, when it ends.
   */
  tasks: {
    completed: number;
    /** Failed for good. */
    failed: number;
    cancelled: number;
    /** completed / (completed + failed); null when none finished. */
    success_rate: number | null;
    /** Seconds of the window the run existed in (from its first session start), what per_hour is over. */
    span_s: number;
    /** completed per hour of span_s; null when span_s is under an hour (a rate is not extrapolated). */
    per_hour: number | null;
    /** The reasons of the tasks failed for good. */
    failure_reasons: Array<{ reason: string; count: number }>;
  };
  /** Task attempts: a task is tried up to its max_attempts times. */
  attempts: {
    /** Attempts started in the window (a resumed attempt started once). */
    started: number;
    /** Attempts that ended in the window with each outcome. */
    completed: number;
    failed: number;
    /** The failed attempts that were not their task's last: the task was tried again. */
    retried: number;
    cancelled: number;
    /** The failed attempts the loop guard ended (reason "looping: ..."): the same action, the same failing command, or no change, again and again. */
    looping: number;
    /** The reasons of all failed attempts, retried or not. */
    failure_reasons: Array<{ reason: string; count: number }>;
  };
  llm: {
    calls: number;
    errors: number;
    tokens_in: number;
    tokens_out: number;
    /** Model calls by backend (llama, openai, scripted). */
    backends: Record<string, number>;
    /** Mean of the tokens per second of the successful calls that recorded one (the scripted backend records none). */
    tokens_per_s: number | null;
    /** Of the same calls. */
    latency_ms: { p50: number; p99: number } | null;
    by_quantization: Array<{ quantization: string; calls: number; tokens_per_s: number | null }>;
    /**
     * The prompt tokens of the calls that said what they evaluated: those
     * evaluated, those kept from an earlier call, and the share kept (null:
     * no call said; the scripted backend and some endpoints cannot).
     */
    prompt: { evaluated: number; reused: number; reuse_ratio: number | null };
    /** Prompt tokens evaluated per second, of the calls that timed it. */
    prompt_tokens_per_s: number | null;
  };
  checkpoints: {
    created: number;
    pruned: number;
    by_kind: Record<string, number>;
    /** The newest checkpoint at `until`, whenever it was made. */
    last: { id: string; time: string; kind: string } | null;
    age_s: number | null;
    /** Checkpoints not pruned at `until`. */
    kept: number;
    /** Bytes on disk of the run's state repository and the workspace's history. */
    disk_bytes: number;
    /** The newest checkpoint attempts before `until` failed: since when, how many, the newest's kind and reason. */
    failing: { since: string; count: number; kind: string | null; reason: string | null } | null;
    /**
     * What a checkpoint now would add to the newest one: how many paths
     * ("state/queue/x.yaml", "workspace/src/a.ts"), since when the oldest
     * change has been unprotected, the first few. Known for a window that
     * ends now only (null otherwise, or when it cannot be worked out).
     */
    unprotected: { paths: number; since: string | null; sample: string[]; checkpoint: { id: string; time: string; kind: string } | null } | null;
  };
  /** The run's config file and the mistakes in it (the agent will not start until they are fixed). */
  config: { file: string | null; problems: string[] };
  /** Whether the run's owner can write what selfware writes in it; the first problems, and one line for all. */
  writable: { ok: boolean; owner: string | null; count: number; problems: Array<{ path: string; why: string }>; message: string | null };
  /** The newest escalation at `until` if no session has started since (systemd stopped restarting the run). */
  escalated: { time: string; reason: string | null } | null;
  governor: {
    decisions: number;
    /** Seconds of the window in each tier (while decisions are known). */
    tier_s: Record<Tier, number>;
    quantization_s: Record<string, number>;
    /** The decision in force at `until`. */
    current: GovernorChange | null;
    changes: GovernorChange[];
  };
  resources: {
    samples: number;
    peaks: {
      vram_used_mb: number | null;
      vram_total_mb: number | null;
      vram_pct: number | null;
      ram_used_mb: number | null;
      ram_total_mb: number | null;
      ram_pct: number | null;
      swap_used_mb: number | null;
      gpu_temp: number | null;
      cpu_load: number | null;
      /** The lowest. */
      disk_free_pct: number | null;
    };
  };
  /** The queue now (not limited to the window). */
  queue: { pending: number; in_progress: number; completed: number; failed: number; cancelled: number; invalid: number; invalid_files: string[]; rejected: number; rejected_files: string[] };
  approvals: { pending: Array<{ id: string; task: string; action: string; requested: string }> };
  /** The run's memory now (state/memory): entries in each file (null: unreadable), and the files set aside as NAME.bad-EPOCHMS. */
  memory: { notes: number | null; outcomes: number | null; set_aside: string[] };
  alerts: Alert[];
  /** Counts over the whole log up to `until`, for counters (prometheus). */
  totals: {
    sessions: number;
    /** Tasks completed, failed for good, cancelled. */
    tasks_completed: number;
    tasks_failed: number;
    tasks_cancelled: number;
    /** Attempts ended with each outcome. */
    attempts_completed: number;
    attempts_failed: number;
    attempts_cancelled: number;
    steps: number;
    llm_calls: number;
    llm_errors: number;
    tokens_in: number;
    tokens_out: number;
    checkpoints: number;
    recoveries: number;
    escalations: number;
  };
  series: {
    /** Where the charts start: the window's start, or the run's first record when the run is younger than the window. */
    start: string;
    /** Bucket length of `buckets`, in seconds: a round length for the charts' span, at most 36 buckets under 18 hours, else an hour or more. */
    bucket_s: number;
    /** Tasks completed and failed for good, attempts retried, steps, and the mean model speed of each bucket. */
    buckets: Array<{ start: string; completed: number; failed: number; retried: number; steps: number; tokens_per_s: number | null }>;
    /** Resource samples, at most about 400 (the peaks of each stretch). */
    resources: Array<{ time: string; vram_pct: number | null; ram_pct: number | null; cpu_load: number | null; tier: Tier | null }>;
    /** The governor's tier over the window as stretches. */
    tiers: Array<{ start: string; end: string; tier: Tier }>;
    checkpoints: Array<{ time: string; kind: string }>;
  };
  /** Problems reading the task log (a torn or corrupt record, a gap). */
  warnings: string[];
  /** The task log's damage (corrupt records, a header or database read from its copy, a gap): not a torn last record. */
  tasklog_damage: string[];
}
