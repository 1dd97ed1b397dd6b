export {
  ConfigError,
  expandEnv,
  formatIssues,
  formatKeyPath,
  loadConfigFile,
  parseConfigText,
  parseYamlText,
  validateConfig,
} from "./load.ts";
export { byteSize, duration, parseByteSize, parseDuration } from "./units.ts";
