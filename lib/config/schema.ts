// Every key of a run's config, with its default: the one place that says what
// /etc/selfware/<run>.yaml may hold. man/selfware.7 documents the same keys.

import type { Spec } from './spec.js';

// Upper bounds: every duration and size has one, so an absurd value is refused at load time.
const HOUR = 3_600_000;
const WEEK = 7 * 24 * HOUR;
const MiB = 1024 * 1024;

const count = (doc: string, dflt: number): Spec => ({ kind: 'int', min: 0, max: 100_000, default: dflt, doc });
const ratio = (what: string, warning: number, critical: number): Spec => ({
  kind: 'object',
  doc: what,
  fields: {
    warning: { kind: 'number', min: 0, max: 1, default: warning, doc: `${what} it is a warning (0 to 1)` },
    critical: { kind: 'number', min: 0, max: 1, default: critical, doc: `${what} it is critical (0 to 1)` },
  },
});
const span = (what: string, warning: number, critical: number): Spec => ({
  kind: 'object',
  doc: what,
  fields: {
    warning: { kind: 'duration', min: 60_000, max: WEEK, default: warning, doc: `${what} this: a warning` },
    critical: { kind: 'duration', min: 60_000, max: WEEK, default: critical, doc: `${what} this: critical` },
  },
});

export const RUN_SCHEMA: Spec = {
  kind: 'object',
  doc: 'a run',
  fields: {
    workspace: {
      kind: 'string',
      default: null,
      nullable: true,
      pattern: /^\//,
      patternDoc: 'an absolute path',
      doc: 'the git repo the agent works in; default <state dir>/<run>/workspace',
    },
    checkpoint: {
      kind: 'object',
      doc: 'checkpoints of state/ and the workspace',
      fields: {
        retention: {
          kind: 'object',
          doc: "what `sw-checkpoint prune` keeps, with restic's forget semantics",
          fields: {
            keep_last: count('keep the newest N checkpoints', 12),
            keep_hourly: count('keep the newest checkpoint of each of the last N hours that have one', 24),
            keep_daily: count('keep the newest checkpoint of each of the last N days that have one', 7),
            keep_weekly: count('keep the newest checkpoint of each of the last N ISO weeks that have one', 4),
          },
        },
        pressure_every: {
          kind: 'duration',
          min: 1000,
          max: WEEK,
          default: 30 * 60_000,
          doc: "while the governor says the run's disk is short of space (warning or critical), the agent prunes by retention and folds the task log at once, and again at most this often",
        },
        forensics_keep: {
          kind: 'duration',
          min: 60_000,
          max: 3 * WEEK,
          default: WEEK,
          doc: 'how long the prune keeps what recoveries and rollbacks set aside (forensics refs, damaged copies of the task log and of state.git), and the checkpoints recoveries used',
        },
        workspace_grace: {
          kind: 'duration',
          min: 1000,
          max: WEEK,
          default: HOUR,
          doc: "how long the prune keeps objects of the workspace's repository that nothing refers to (snapshots of pruned checkpoints): a git command of the agent's in flight may still need them",
        },
      },
    },
    agent: {
      kind: 'object',
      doc: 'the agent and its tasks',
      fields: {
        max_attempts: { kind: 'int', min: 1, max: 100, default: 3, doc: 'attempts a task gets unless it says otherwise' },
        task_timeout: { kind: 'duration', min: 1000, max: 4 * 3_600_000, default: 3_600_000, doc: 'time a task attempt may take unless it says otherwise (at most 4h)' },
        tool_timeout: { kind: 'duration', min: 100, max: 5 * 60_000, default: 30_000, doc: 'time one action (a shell command) may take (at most 5m); then its process group is killed' },
        step_timeout: { kind: 'duration', min: 1000, max: 4 * 3_600_000, default: 10 * 60_000, doc: 'time the model may take to answer one step (actions have tool_timeout, approvals approval_timeout)' },
        idle_warning: { kind: 'duration', min: 1000, max: WEEK, default: 30 * 60_000, doc: 'warn when the queue has been empty this long' },
        output_budget: { kind: 'bytes', max: 16 * MiB, default: 16 * 1024, doc: "bytes of an action's output kept in the transcript (head and tail)" },
        context_budget: { kind: 'int', min: 0, max: 10_000_000, default: 0, doc: 'tokens of transcript given to the model; 0: the context size less the answer' },
        condense: {
          kind: 'enum',
          values: ['rule', 'model'],
          default: 'rule',
          doc: "when an attempt's steps outgrow the context budget, how the older ones are condensed (once, most of them at a time): rule, one line a step; model, a summary the model writes (the rule if it fails)",
        },
        condense_keep: { kind: 'number', min: 0.02, max: 0.9, default: 0.1, doc: 'the share of the context budget kept as whole steps (the newest) when the older ones are condensed' },
        loop_repeat: { kind: 'int', min: 0, max: 1000, default: 3, doc: 'the same action this many times in a row gets a note to the model; two more end the attempt as looping; 0: not checked' },
        loop_failing: { kind: 'int', min: 0, max: 1000, default: 3, doc: 'the same shell command failing this many times on an unchanged workspace (no change since its last failure) gets a note to the model; two more end the attempt as looping; 0: not checked' },
        loop_unchanged: { kind: 'int', min: 0, max: 10_000, default: 12, doc: 'this many steps in a row without a change to the workspace get a note to the model; half as many more end the attempt as looping; 0: not checked' },
        memory_budget: { kind: 'int', min: 0, max: 1_000_000, default: 1024, doc: "tokens of the run's memory (state/memory: the agent's notes, the outcomes of earlier attempts) and of the repository's map given with each task; 0: none" },
        memory_notes: { kind: 'int', min: 1, max: 100_000, default: 300, doc: 'notes state/memory/notes.md keeps; older ones are dropped (the checkpoints keep them)' },
        memory_outcomes: { kind: 'int', min: 1, max: 100_000, default: 200, doc: 'outcome lines state/memory/outcomes.md keeps; older ones are dropped (the checkpoints keep them)' },
        rss_limit: { kind: 'bytes', max: 1024 ** 4, default: 4 * 1024 ** 3, doc: "the agent's own memory (its anonymous resident memory less what loading the model added) above which it checkpoints and exits to be restarted, a restart that backs off and escalates like a crash; 0: no limit" },
        heartbeat: { kind: 'duration', min: 1000, max: HOUR, default: 5 * 60_000, doc: 'how often the agent notes in the task log that it is alive' },
        idle_task: { kind: 'string', default: null, nullable: true, doc: 'a prompt queued when the queue has been empty for idle_task_after (self-improvement)' },
        idle_task_after: { kind: 'duration', min: 1000, max: WEEK, default: 30 * 60_000, doc: 'how long the queue must be empty before idle_task is queued' },
        archive_after: {
          kind: 'duration',
          min: 1000,
          max: WEEK,
          default: HOUR,
          doc: "a task finished this long ago, whose files the newest checkpoint holds, moves from the queue into state/archive (checked as often, at most hourly)",
        },
        archive_keep: {
          kind: 'duration',
          min: 60_000,
          max: 3 * WEEK,
          default: 2 * WEEK,
          doc: 'archives of finished tasks older than this leave state/ (the checkpoints that hold them keep them)',
        },
        shell: { kind: 'string', default: '/bin/sh', pattern: /^\//, patternDoc: 'an absolute path', doc: 'the shell that runs shell actions and verify commands' },
      },
    },
    llm: {
      kind: 'object',
      doc: 'the language model',
      fields: {
        backend: { kind: 'enum', values: ['llama', 'openai', 'scripted'], default: 'llama', doc: 'llama: node-llama-cpp on local GGUF files; openai: an OpenAI-compatible endpoint; scripted: answers from a file' },
        models: {
          kind: 'map',
          keyPattern: /^(Q4_K_M|Q3_K_L|Q2_K)$/,
          of: { kind: 'string', default: null, pattern: /^\//, patternDoc: 'an absolute path', doc: 'a GGUF file' },
          default: {},
          doc: 'llama: the GGUF file for each quantization level (Q4_K_M, Q3_K_L, Q2_K)',
        },
        quantization: { kind: 'enum', values: ['Q4_K_M', 'Q3_K_L', 'Q2_K'], default: 'Q4_K_M', doc: 'the level to start at; the governor may step it down and back' },
        context: { kind: 'int', min: 1024, max: 1_048_576, default: 8192, doc: 'context size in tokens' },
        max_tokens: { kind: 'int', min: 16, max: 65_536, default: 1024, doc: 'tokens one answer may take' },
        temperature: { kind: 'number', min: 0, max: 2, default: 0.2, doc: 'sampling temperature' },
        threads: { kind: 'int', min: 0, max: 1024, default: 0, doc: 'CPU threads for llama; 0: all cores but one (see bench/tokens.ts to find the best on a machine)' },
        gpu: { kind: 'bool', default: true, doc: 'llama: offload to a GPU when there is one' },
        idle_unload: { kind: 'duration', min: 1000, max: WEEK, default: 10 * 60_000, doc: 'unload the model after this long without a request' },
        endpoint: { kind: 'string', default: 'http://127.0.0.1:8080/v1', pattern: /^https?:\/\//, patternDoc: 'an http(s) URL', doc: 'openai: the base URL' },
        model: { kind: 'string', default: 'default', doc: 'openai: the model name sent with each request (at a level model_names does not name)' },
        server: {
          kind: 'enum',
          values: ['generic', 'ollama', 'llama-server', 'vllm'],
          default: 'generic',
          doc: "openai: the server behind the endpoint; ollama can be told to unload a model (keep_alive 0), the others keep theirs",
        },
        model_names: {
          kind: 'map',
          keyPattern: /^(Q4_K_M|Q3_K_L|Q2_K)$/,
          of: { kind: 'string', default: null, doc: 'a model name' },
          default: {},
          doc: 'openai: the model name for each quantization level (an Ollama tag, say), so that a level the governor chooses is a real switch',
        },
        endpoints: {
          kind: 'map',
          keyPattern: /^(Q4_K_M|Q3_K_L|Q2_K)$/,
          of: { kind: 'string', default: null, pattern: /^https?:\/\//, patternDoc: 'an http(s) URL', doc: 'a base URL' },
          default: {},
          doc: 'openai: the base URL for each quantization level (a llama-server or vLLM per level); a level with neither this nor model_names is the server\'s to decide',
        },
        api_key_env: { kind: 'string', default: null, nullable: true, doc: 'openai: the environment variable holding the API key' },
        request_timeout: { kind: 'duration', min: 100, max: 4 * HOUR, default: 5 * 60_000, doc: 'openai: time one request may take' },
        retries: { kind: 'int', min: 0, max: 100, default: 3, doc: 'openai: retries of a failed request, with backoff' },
        patience: { kind: 'duration', min: 0, max: WEEK, default: 5 * 60_000, doc: 'openai: unavailable this long, the agent exits 69 so systemd restarts it' },
        breaker_threshold: { kind: 'int', min: 1, max: 1000, default: 5, doc: 'openai: failures in a row that open the circuit breaker' },
        breaker_cooldown: { kind: 'duration', min: 0, max: HOUR, default: 30_000, doc: 'openai: how long an open breaker refuses requests' },
        script: { kind: 'string', default: null, nullable: true, pattern: /^\//, patternDoc: 'an absolute path', doc: 'scripted: the YAML file of answers' },
      },
    },
    policy: {
      kind: 'object',
      doc: "what actions may do: deny, ask a human (approve), allow, checked in that order (see lib/agent/policy.ts and selfware(7)); a guard against the obvious, not a sandbox: the unit's hardening is",
      fields: {
        deny: {
          kind: 'list',
          of: { kind: 'string', default: null, doc: 'a rule' },
          default: ['shell:rm -rf /', 'shell:rm -rf /*', 'shell:rm -rf ~*', 'shell:*mkfs*', 'shell:*dd *of=/dev/*', 'shell:*:(){*', 'shell:*shutdown*', 'shell:*reboot*'],
          doc: 'rules that refuse an action: "ACTION:GLOB" or "GLOB" (any action). ACTION is shell; read_file (every path read: read_file, view, search\'s path, "." without one); write_file (every path written: write_file, edit, each file of apply_patch); or view, search, edit, apply_patch alone. A shell command is parsed as bash and the glob tried on every simple command in it (lists, pipelines, compound commands, functions, command and process substitutions) and on what runs through env, sudo, doas, nice, ionice, timeout, xargs, nohup, setsid, stdbuf, time, command, builtin, exec, chrt, taskset, busybox, sh/bash/dash/zsh -c, a script piped or here-documented into a shell, eval, env -S, su -c and trap (8 levels at most): as written, after quote removal, with the basename of its name, and in a normal form (the options the rule names however the command orders, clusters or spells them, paths normalised, $HOME as ~). While there are deny rules, a command that cannot be parsed is refused',
        },
        approve: {
          kind: 'list',
          of: { kind: 'string', default: null, doc: 'a rule' },
          default: ['shell:git push*', 'shell:*sudo *'],
          doc: 'rules that make an action wait for a human, tried as deny rules are',
        },
        allow: { kind: 'list', of: { kind: 'string', default: null, doc: 'a rule' }, default: ['*'], doc: 'rules that let an action run: every command in it, and every command a wrapper runs, must match one; an action that is not wholly allowed waits for a human' },
        approval_timeout: { kind: 'duration', min: 1000, max: WEEK, default: 3_600_000, doc: 'how long an approval may wait' },
        on_timeout: { kind: 'enum', values: ['reject', 'pause'], default: 'reject', doc: 'what an approval that timed out does: reject the action, or pause the run until a human decides' },
      },
    },
    recovery: {
      kind: 'object',
      doc: 'what sw-recover does after a crash',
      fields: {
        max_failures: { kind: 'int', min: 1, max: 1000, default: 5, doc: 'crashes or failed recoveries inside the window that escalate' },
        window: { kind: 'duration', min: 1000, max: WEEK, default: 3_600_000, doc: 'the window for max_failures' },
        backoff_base: { kind: 'duration', min: 0, max: 3_600_000, default: 1000, doc: 'delay before restarting after the first crash; doubles with each crash in a row' },
        backoff_max: { kind: 'duration', min: 0, max: 3_600_000, default: 60_000, doc: 'the longest delay' },
        stable_after: { kind: 'duration', min: 1000, max: WEEK, default: 3_600_000, doc: 'a session that stayed up this long resets the count of crashes in a row' },
      },
    },
    report: {
      kind: 'object',
      doc: 'the daily report and alerts',
      fields: {
        mail: { kind: 'string', default: null, nullable: true, pattern: /^[^@\s]+@[^@\s]+$/, patternDoc: 'a mail address', doc: 'where the daily report and the alerts go (through the system sendmail); none: not mailed' },
        from: { kind: 'string', default: null, nullable: true, pattern: /^[^@\s]+@[^@\s]+$/, patternDoc: 'a mail address', doc: "the report's From address; none: sendmail's default for the user" },
        sendmail: { kind: 'string', default: '/usr/sbin/sendmail', pattern: /^\//, patternDoc: 'an absolute path', doc: 'the sendmail program that takes the mail' },
        check: {
          kind: 'object',
          doc: "sw-report --check's alerts and the report's verdict",
          fields: {
            window: { kind: 'duration', min: 60_000, max: 7 * 86_400_000, default: 3_600_000, doc: 'the recent past the success and error rates are judged over' },
            success_rate: ratio('tasks completed of those finished in the window, below which', 0.5, 0.25),
            error_rate: ratio('steps that failed (a tool error, an invalid answer, a model error) of those taken in the window, above which', 0.1, 0.25),
            progress: span('no step while tasks are waiting for longer than', 3_600_000, 3 * 3_600_000),
            checkpoint_age: span('while the agent runs, the newest checkpoint older than', 15 * 60_000, 3_600_000),
          },
        },
      },
    },
    tasklog: {
      kind: 'object',
      doc: 'the task log',
      fields: {
        compact_bytes: {
          kind: 'bytes',
          max: 64 * MiB,
          default: 1024 * 1024,
          doc: 'a checkpoint folds the journal into the database once the journal holds this much',
        },
        downsample_after: {
          kind: 'duration',
          min: 60_000,
          max: 3 * WEEK,
          default: 7 * 86_400_000,
          doc: 'resource samples older than this are folded into one row per downsample_bucket (its peaks, its sample count) when the journal is folded',
        },
        downsample_bucket: {
          kind: 'duration',
          min: 1000,
          max: 86_400_000,
          default: 5 * 60_000,
          doc: 'the span one folded row of resource samples covers (and of steps and model calls)',
        },
        detail_after: {
          kind: 'duration',
          min: 60_000,
          max: 3 * WEEK,
          default: 2 * WEEK,
          doc: "steps and model calls older than this are folded into one row per downsample_bucket (counts, errors, tokens, speed, latencies: the report's figures stay) when the journal is folded; so are finished tasks whose archives left state/, and pruned checkpoints",
        },
      },
    },
  },
};

export interface RetentionPolicy {
  keep_last: number;
  keep_hourly: number;
  keep_daily: number;
  keep_weekly: number;
}

/** Checks across keys: [key, message]. */
export const RUN_CHECKS = [
  (c: RunConfig): Array<[string, string]> =>
    c.recovery.backoff_base > c.recovery.backoff_max ? [['recovery.backoff_base', 'must not be more than recovery.backoff_max']] : [],
  (c: RunConfig): Array<[string, string]> =>
    c.llm.max_tokens >= c.llm.context ? [['llm.max_tokens', `must be less than llm.context (${c.llm.context})`]] : [],
  (c: RunConfig): Array<[string, string]> => {
    const k = c.report.check;
    const out: Array<[string, string]> = [];
    if (k.success_rate.critical > k.success_rate.warning) out.push(['report.check.success_rate.critical', `must not be above report.check.success_rate.warning (${k.success_rate.warning}): a lower success rate is worse`]);
    for (const n of ['error_rate', 'progress', 'checkpoint_age'] as const) {
      if (k[n].critical < k[n].warning) out.push([`report.check.${n}.critical`, `must not be below report.check.${n}.warning`]);
    }
    return out;
  },
];

export interface ReportConfig {
  mail: string | null;
  from: string | null;
  sendmail: string;
  check: {
    window: number;
    success_rate: { warning: number; critical: number };
    error_rate: { warning: number; critical: number };
    progress: { warning: number; critical: number };
    checkpoint_age: { warning: number; critical: number };
  };
}

export interface RecoveryConfig {
  max_failures: number;
  window: number;
  backoff_base: number;
  backoff_max: number;
  stable_after: number;
}

export type Quant = 'Q4_K_M' | 'Q3_K_L' | 'Q2_K';

export interface AgentConfig {
  max_attempts: number;
  task_timeout: number;
  tool_timeout: number;
  step_timeout: number;
  idle_warning: number;
  output_budget: number;
  context_budget: number;
  condense: 'rule' | 'model';
  condense_keep: number;
  loop_repeat: number;
  loop_failing: number;
  loop_unchanged: number;
  memory_budget: number;
  memory_notes: number;
  memory_outcomes: number;
  rss_limit: number;
  heartbeat: number;
  idle_task: string | null;
  idle_task_after: number;
  archive_after: number;
  archive_keep: number;
  shell: string;
}

export interface LlmConfig {
  backend: 'llama' | 'openai' | 'scripted';
  models: Partial<Record<Quant, string>>;
  quantization: Quant;
  context: number;
  max_tokens: number;
  temperature: number;
  threads: number;
  gpu: boolean;
  idle_unload: number;
  endpoint: string;
  model: string;
  server: 'generic' | 'ollama' | 'llama-server' | 'vllm';
  model_names: Partial<Record<Quant, string>>;
  endpoints: Partial<Record<Quant, string>>;
  api_key_env: string | null;
  request_timeout: number;
  retries: number;
  patience: number;
  breaker_threshold: number;
  breaker_cooldown: number;
  script: string | null;
}

export interface PolicyConfig {
  deny: string[];
  approve: string[];
  allow: string[];
  approval_timeout: number;
  on_timeout: 'reject' | 'pause';
}

export interface RunConfig {
  workspace: string | null;
  checkpoint: { retention: RetentionPolicy; pressure_every: number; forensics_keep: number; workspace_grace: number };
  agent: AgentConfig;
  llm: LlmConfig;
  policy: PolicyConfig;
  recovery: RecoveryConfig;
  report: ReportConfig;
  tasklog: { compact_bytes: number; downsample_after: number; downsample_bucket: number; detail_after: number };
}
