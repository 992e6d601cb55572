//! Bedrock Titan text bodies, both directions. (Filled in by the Bedrock issue.)
