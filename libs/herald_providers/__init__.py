"""Provider adapters: each speaks one real provider's wire protocol."""
