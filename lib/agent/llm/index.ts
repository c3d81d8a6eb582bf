// The backend a run's config asks for. llama (node-llama-cpp and its native
// code) is loaded only when it is the one in use.

import type { RunConfig } from '../../config/schema.js';
import { configError } from '../../exit.js';
import { OpenAiBackend } from './openai.js';
import { ScriptedBackend, loadScript } from './scripted.js';
import type { LlmBackend } from './types.js';

export async function createBackend(config: RunConfig, configFile: string | null): Promise<LlmBackend> {
  const where = configFile ?? 'the run config';
  switch (config.llm.backend) {
    case 'scripted': {
      if (!config.llm.script) throw configError(`${where}: llm.script: the scripted backend needs a script file`);
      return new ScriptedBackend(await loadScript(config.llm.script), config.llm.script);
    }
    case 'openai':
      return new OpenAiBackend(config.llm);
    case 'llama': {
      const level = config.llm.quantization;
      if (!config.llm.models[level]) throw configError(`${where}: llm.models.${level}: no GGUF file for the starting quantization level`);
      const { LlamaBackend } = await import('./llama.js');
      return new LlamaBackend(config.llm);
    }
  }
}
