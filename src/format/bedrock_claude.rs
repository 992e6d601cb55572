//! Bedrock Claude (Anthropic Messages) bodies, both directions. (Filled in by the Bedrock issue.)
