//! Canonical ⇄ Bedrock Converse types. (Filled in by the Bedrock issue.)
